package guard

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

// shards of the per-source table; a power of two.
const shardCount = 64

// sourceKey is the unit of per-source state and of bans: an IPv4 address, or the /64 of an
// IPv6 address (one subscriber usually owns a whole /64).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		a = a.WithZone("")
		b := a.As16()
		clear(b[8:])
		return netip.AddrFrom16(b)
	}
	return a
}

// banPrefix is the prefix a ban of source a covers: /32 or /64.
func banPrefix(a netip.Addr) netip.Prefix {
	k := sourceKey(a)
	if k.Is4() {
		return netip.PrefixFrom(k, 32)
	}
	return netip.PrefixFrom(k, 64)
}

// source is what the guard remembers about one source. Guarded by its shard's mutex.
// Times are Unix nanoseconds.
type source struct {
	tokens   float64
	refill   int64 // when tokens were last topped up
	seen     int64 // last activity, for pruning
	banUntil int64 // a ban this node made, enforced before the cluster has it
	banEpoch uint64

	floodStart int64 // rate-limit refusals in the window starting here
	floods     int

	auth    []int64 // times of recent digest failures, oldest first
	unknown []unknownUser
}

type unknownUser struct {
	hash uint64
	at   int64
}

type shard struct {
	mu       sync.Mutex
	m        map[netip.Addr]*source
	overflow *source  // shared by new sources while the shard is full
	_        [40]byte // one cache line per shard
}

type sourceTable struct {
	shards   [shardCount]shard
	perShard int
}

func newSourceTable(maxSources int) *sourceTable {
	t := &sourceTable{perShard: max(maxSources/shardCount, 1)}
	for i := range t.shards {
		t.shards[i].m = map[netip.Addr]*source{}
		t.shards[i].overflow = &source{}
	}
	return t
}

func (t *sourceTable) shard(k netip.Addr) *shard {
	b := k.As16()
	h := binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])*0x9e3779b97f4a7c15
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	return &t.shards[(h>>58)&(shardCount-1)]
}

// get returns the state of k, creating it (full bucket) if new. The shard must be locked.
func (s *shard) get(k netip.Addr, now int64, burst float64, perShard int) *source {
	if src, ok := s.m[k]; ok {
		return src
	}
	if len(s.m) >= perShard {
		return s.overflow
	}
	src := &source{tokens: burst, refill: now}
	s.m[k] = src
	return src
}

// take spends a token if the bucket has one.
func (s *source) take(now int64, rate, burst float64) bool {
	if dt := now - s.refill; dt > 0 {
		s.tokens += float64(dt) * rate / 1e9
		if s.tokens > burst {
			s.tokens = burst
		}
		s.refill = now
	} else if s.refill == 0 {
		s.tokens, s.refill = burst, now
	}
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	return false
}

// idle reports whether s holds nothing worth keeping at now.
func (s *source) idle(now, idleFor int64) bool {
	return now-s.seen > idleFor && s.banUntil <= now
}

// prune drops idle sources and returns how many remain.
func (t *sourceTable) prune(now, idleFor int64) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, src := range s.m {
			if src.idle(now, idleFor) {
				delete(s.m, k)
			}
		}
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// len counts tracked sources.
func (t *sourceTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

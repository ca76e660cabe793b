package guard

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
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
	requests bucket // out-of-dialog requests (Check)
	packets  bucket // UDP datagrams before parsing (Datagram)
	seen     int64  // last activity, for pruning
	banUntil int64  // a ban this node made, enforced before the cluster has it
	banEpoch uint64

	floodStart int64 // rate-limit refusals in the window starting here
	floods     int
	meterEvent int64 // when the datagram meter last left an event for this source

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

// get returns the state of k, creating it if new. The shard must be locked.
func (s *shard) get(k netip.Addr, perShard int) *source {
	if src, ok := s.m[k]; ok {
		return src
	}
	if len(s.m) >= perShard {
		return s.overflow
	}
	src := &source{} // buckets fill at their first take, with the burst that applies then
	s.m[k] = src
	return src
}

// scaled multiplies a bucket's rate and burst by 1 + n (n at most limit): the budget of a
// source that stands for n rooms or calls.
func scaled(rate, burst float64, n, limit int) (float64, float64) {
	if n <= 0 {
		return rate, burst
	}
	m := float64(1 + min(n, limit))
	return rate * m, burst * m
}

// flooded counts one refusal for going over a rate limit and reports whether it is the
// refusals-th within window (the source floods: ban it). The shard must be locked.
func (s *source) flooded(now int64, refusals int, window time.Duration) bool {
	if refusals <= 0 {
		return false
	}
	if now-s.floodStart > int64(window) {
		s.floodStart, s.floods = now, 0
	}
	s.floods++
	if s.floods >= refusals {
		s.floods = 0
		return true
	}
	return false
}

// bucket is a token bucket; the zero value is full at its first take.
type bucket struct {
	tokens float64
	refill int64 // when tokens were last topped up (Unix ns); 0: never used
}

// take spends a token if the bucket has one.
func (b *bucket) take(now int64, rate, burst float64) bool {
	if dt := now - b.refill; b.refill == 0 {
		b.tokens, b.refill = burst, now
	} else if dt > 0 {
		b.tokens += float64(dt) * rate / 1e9
		if b.tokens > burst {
			b.tokens = burst
		}
		b.refill = now
	}
	if b.tokens >= 1 {
		b.tokens--
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

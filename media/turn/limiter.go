package turn

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the per-source limit on unauthenticated requests.
const (
	DefaultUnauthRate  = 10 // requests per second
	DefaultUnauthBurst = 20
)

// limiterShards and limiterMax bound the per-source table.
const (
	limiterShards = 16
	limiterMax    = 100_000
)

// bucket is a token bucket.
type bucket struct {
	tokens float64
	last   int64 // ns on the monotonic clock
}

func (b *bucket) take(now int64, rate, burst float64) bool {
	if b.last == 0 {
		b.tokens = burst
	} else if d := now - b.last; d > 0 {
		b.tokens = min(burst, b.tokens+float64(d)*rate/1e9)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sourceLimiter is a token bucket per source (an IPv4 address, an IPv6 /64). A source's first
// request allocates its entry; later ones do not. A full shard first forgets sources whose
// bucket has refilled (they are as good as new), then makes newcomers share one bucket.
type sourceLimiter struct {
	rate, burst float64
	seed        maphash.Seed
	shards      [limiterShards]limiterShard
}

type limiterShard struct {
	mu       sync.Mutex
	m        map[netip.Addr]*bucket
	overflow bucket
}

func newSourceLimiter(rate float64, burst int) *sourceLimiter {
	l := &sourceLimiter{rate: rate, burst: float64(burst), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = map[netip.Addr]*bucket{}
	}
	return l
}

// unitOf is the unit a limit applies to: an IPv4 address or an IPv6 /64.
func unitOf(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// monoStart anchors the limiter's monotonic clock.
var monoStart = time.Now()

// allow takes a token of src's bucket.
func (l *sourceLimiter) allow(src netip.Addr) bool {
	if l == nil {
		return true
	}
	k := unitOf(src)
	now := int64(time.Since(monoStart))
	sh := &l.shards[maphash.Comparable(l.seed, k)%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[k]
	if b == nil {
		if len(sh.m) >= limiterMax/limiterShards {
			sh.prune(now, l.burst/l.rate)
		}
		if len(sh.m) >= limiterMax/limiterShards {
			b = &sh.overflow
		} else {
			b = &bucket{}
			sh.m[k] = b
		}
	}
	return b.take(now, l.rate, l.burst)
}

// prune forgets the sources whose bucket would be full again by now.
func (sh *limiterShard) prune(now int64, refill float64) {
	for k, b := range sh.m {
		if float64(now-b.last)/1e9 >= refill {
			delete(sh.m, k)
		}
	}
}

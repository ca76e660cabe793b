package relay

import (
	"sync/atomic"
	"time"
)

// epoch anchors the monotonic nanosecond clock used on the hot path.
var epoch = time.Now()

// mono returns monotonic nanoseconds since epoch (always > 0).
func mono() int64 { return int64(time.Since(epoch)) + 1 }

// monoTime converts a mono value back to wall time; 0 means never.
func monoTime(m int64) time.Time {
	if m == 0 {
		return time.Time{}
	}
	return epoch.Add(time.Duration(m - 1))
}

// rateGate lets one event through per interval; safe for concurrent use and
// allocation free, so a packet-triggered log can be guarded by it.
type rateGate struct {
	every time.Duration
	next  atomic.Int64
}

func (g *rateGate) allow() bool {
	now := mono()
	n := g.next.Load()
	if now < n {
		return false
	}
	return g.next.CompareAndSwap(n, now+int64(g.every))
}

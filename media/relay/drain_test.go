package relay

import (
	"runtime"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// TestPoolDrainQueuedNotDelivered: packets that reach a released pair during its drain are
// never read by the call that gets the same ports next (the drain close discards them).
func TestPoolDrainQueuedNotDelivered(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newTestPool(t, 200*time.Millisecond)
	pr := acquire(t, p)
	port := pr.Port()
	old := newEndpoint(t)
	pr.Release()
	old.send(local(pr), rtpPacket(0, 1, 0, 1, "old call"))
	old.send(localRTCP(pr), rtcpPacket(200))
	testutil.Eventually(t, "drain to finish", func() bool { return p.Stats().Draining == 0 })
	next, err := p.AcquirePort(port)
	if err != nil {
		t.Fatalf("AcquirePort after drain: %v", err)
	}
	defer next.ReleaseNow()
	for _, c := range []interface {
		SetReadDeadline(time.Time) error
		Read([]byte) (int, error)
	}{next.RTP, next.RTCP} {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(make([]byte, 1500)); err == nil {
			t.Fatalf("the next holder of port %d read %d bytes of the old call", port, n)
		}
	}
}

// TestPoolDrainNoGoroutinePerPair: released pairs wait out their drain without a goroutine
// each (one reaper for the pool); they were three each (two discarding readers and a waiter).
func TestPoolDrainNoGoroutinePerPair(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newTestPool(t, time.Minute)
	pairs := make([]*Pair, 16)
	for i := range pairs {
		pairs[i] = acquire(t, p)
	}
	before := runtime.NumGoroutine()
	for _, pr := range pairs {
		pr.Release()
	}
	if st := p.Stats(); st.Draining != len(pairs) {
		t.Fatalf("draining = %d, want %d", st.Draining, len(pairs))
	}
	if grew := runtime.NumGoroutine() - before; grew > 2 {
		t.Fatalf("releasing %d pairs started %d goroutines", len(pairs), grew)
	}
}

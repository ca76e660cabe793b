package turn

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// unauthAllocate is an Allocate request without credentials (pion answers 401 with a nonce,
// 4.7x its size: an amplifier toward a spoofed source).
func unauthAllocate(t testing.TB) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Length: 4, Value: []byte{17, 0, 0, 0}}, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// TestUnauthenticatedAllocateFloodBounded (issue #14 item 10): 20,000 unauthenticated
// Allocate requests from one source get at most the source's burst plus its rate over the
// flood's duration in answers; the rest are dropped and counted.
func TestUnauthenticatedAllocateFloodBounded(t *testing.T) {
	s := newServer(t, nil)
	c, err := net.ListenPacket("udp4", "127.0.0.9:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var answers, bytesIn atomic.Int64
	var last atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			answers.Add(1)
			bytesIn.Add(int64(n))
			last.Store(time.Now().UnixNano())
		}
	}()
	req := unauthAllocate(t)
	start := time.Now()
	const flood = 20000
	for i := range flood {
		// a fresh transaction ID per request, as a flooder writes them
		req[8], req[9], req[10], req[11] = byte(i), byte(i>>8), byte(i>>16), 0x5a
		if _, err := c.WriteTo(req, s.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	<-done // the reader stops a second after the last answer
	elapsed := time.Duration(max(last.Load()-start.UnixNano(), 0))
	bound := int64(DefaultUnauthBurst) + int64(DefaultUnauthRate*elapsed.Seconds()) + 5
	t.Logf("%d requests of %d bytes, %d answers (%d bytes) within %s; bound %d; dropped %d",
		flood, len(req), answers.Load(), bytesIn.Load(), elapsed.Round(time.Millisecond), bound, s.Stats().RateLimited)
	if answers.Load() > bound {
		t.Fatalf("%d answers to %d unauthenticated requests, want at most %d", answers.Load(), flood, bound)
	}
	if s.Stats().RateLimited == 0 {
		t.Fatal("no rate-limited request counted")
	}
}

package relay

import (
	"errors"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

func TestPoolPairsAreEvenOdd(t *testing.T) {
	p := newTestPool(t, time.Second)
	pr := acquire(t, p)
	if pr.Port()%2 != 0 {
		t.Fatalf("RTP port %d is odd", pr.Port())
	}
	if got := pr.RTCP.LocalAddr().(interface{ String() string }).String(); got == "" {
		t.Fatal("no RTCP socket")
	}
	lo, hi := p.Range()
	if pr.Port() < lo || pr.Port()+1 > hi {
		t.Fatalf("port %d outside %d-%d", pr.Port(), lo, hi)
	}
}

func TestPoolExhaustion(t *testing.T) {
	p, err := NewPool(PoolConfig{Bind: loopback, Min: 41001, Max: 41004})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	// 41002-41003 is the only full pair in an odd-started 4-port range.
	if p.Stats().Pairs != 1 {
		t.Fatalf("pairs = %d, want 1", p.Stats().Pairs)
	}
	if _, err := p.Acquire(); err != nil {
		t.Skipf("port 41002 busy on this host: %v", err)
	}
	if _, err := p.Acquire(); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("err = %v, want ErrPoolExhausted", err)
	}
	if st := p.Stats(); st.Refused != 1 || st.InUse != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPoolDrain: a released pair keeps discarding for the drain time: it
// forwards nothing and is not handed out again until the drain is over.
func TestPoolDrain(t *testing.T) {
	testutil.CheckGoroutines(t)
	const drain = 300 * time.Millisecond
	p := newTestPool(t, drain)
	pa, pb := acquire(t, p), acquire(t, p)
	a, b := newEndpoint(t), newEndpoint(t)
	s := NewStream(pa, pb, StreamConfig{})
	s.SetPeer(SideA, Peer{RTP: a.addr()})
	s.SetPeer(SideB, Peer{RTP: b.addr()})
	a.send(local(pa), rtpPacket(0, 1, 0, 1, "x"))
	b.mustRecv()
	port := pa.Port()
	released := time.Now()
	s.Close()

	if st := p.Stats(); st.Draining != 2 {
		t.Fatalf("draining = %d, want 2", st.Draining)
	}
	a.send(local(pa), rtpPacket(0, 2, 0, 1, "stale"))
	if _, _, ok := b.recv(50 * time.Millisecond); ok {
		t.Fatal("draining port forwarded a packet")
	}
	if _, err := p.AcquirePort(port); !errors.Is(err, ErrPortUnavailable) {
		t.Fatalf("AcquirePort during drain: err = %v, want ErrPortUnavailable", err)
	}
	testutil.Eventually(t, "drain to finish", func() bool { return p.Stats().Draining == 0 })
	if since := time.Since(released); since < drain {
		t.Fatalf("pair freed after %v, before the %v drain", since, drain)
	}
	pr, err := p.AcquirePort(port)
	if err != nil {
		t.Fatalf("AcquirePort after drain: %v", err)
	}
	pr.ReleaseNow()
}

func TestPoolBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  PoolConfig
	}{
		{"no bind", PoolConfig{Min: 20000, Max: 20010}},
		{"no pair", PoolConfig{Bind: loopback, Min: 20001, Max: 20002}},
		{"inverted", PoolConfig{Bind: loopback, Min: 20010, Max: 20000}},
		{"too high", PoolConfig{Bind: loopback, Min: 65534, Max: 65536}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewPool(tc.cfg); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("err = %v, want ErrBadConfig", err)
			}
		})
	}
}

// TestPoolPortsUnpredictable (issue #14 item 1): the pairs of consecutive calls are not handed
// out in sequence, so a stranger cannot aim at the next call's ports.
func TestPoolPortsUnpredictable(t *testing.T) {
	p := newTestPool(t, time.Second) // 20 pairs
	prev := acquire(t, p).Port()
	next := 0
	for range 12 {
		pr := acquire(t, p)
		if pr.Port() == prev+2 {
			next++
		}
		prev = pr.Port()
	}
	// In sequence every one is the previous +2; at random about one in the remaining pairs is.
	if next > 5 {
		t.Fatalf("%d of 12 acquisitions took the pair after the previous one", next)
	}
}

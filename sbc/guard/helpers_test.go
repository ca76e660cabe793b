package guard

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/registrar"
)

// The guard is the registrar's auth observer.
var _ registrar.AuthObserver = (*Guard)(nil)

// testClock is an injectable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const testDomain = "example.com"

var nodeIP = netip.MustParseAddr("192.0.2.1")

// newTestGuard returns a guard over a Local store holding rooms "boardroom" and "huddle",
// with a test clock; mod adjusts the config first.
func newTestGuard(t testing.TB, mod func(*Config)) (*Guard, *state.Local, *testClock) {
	t.Helper()
	st := state.NewLocal()
	ctx := context.Background()
	for _, r := range []state.Room{
		{Name: "boardroom", Inbound: state.InboundOpen},
		{Name: "huddle", Inbound: state.InboundOpen},
	} {
		if err := st.Propose(ctx, state.PutRoom(r)); err != nil {
			t.Fatal(err)
		}
	}
	clk := newClock()
	cfg := Config{
		Domain:    testDomain,
		NodeAddrs: []netip.Addr{nodeIP},
		NodeID:    "node-1",
		Now:       clk.Now,
		Logger:    slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return g, st, clk
}

// invite is a sane INVITE from an outsider to a room.
func invite(src string) *Request {
	return &Request{
		Source:      netip.MustParseAddrPort(src),
		Transport:   "UDP",
		Method:      "INVITE",
		RURIUser:    "boardroom",
		RURIHost:    testDomain,
		FromName:    "Alice",
		FromUser:    "alice",
		FromHost:    "partner.net",
		ToUser:      "boardroom",
		ToHost:      testDomain,
		UserAgent:   "Poly/RealPresence 6.2",
		CallID:      "abc@partner.net",
		MaxForwards: 70,
	}
}

func with(r *Request, f func(*Request)) *Request {
	f(r)
	return r
}

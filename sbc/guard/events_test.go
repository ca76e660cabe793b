package guard

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEventsRingAndFilter(t *testing.T) {
	g, _, clk := newTestGuard(t, func(c *Config) { c.Events = 5; c.Deny = []string{"203.0.113.0/24"} })
	start := clk.Now()
	g.Check(invite("203.0.113.1:5060"))                                                 // deny-list
	g.Check(with(invite("198.51.100.1:5060"), func(r *Request) { r.RURIUser = "ceo" })) // unknown-user
	g.Check(with(invite("198.51.100.2:5060"), func(r *Request) { r.MaxForwards = 0 }))  // max-forwards
	clk.Add(time.Minute)
	g.Check(with(invite("[2001:db8::5]:5060"), func(r *Request) { r.RURIHost = "other.example" })) // relay
	g.Check(invite("203.0.113.2:5060"))                                                            // deny-list
	g.Check(invite("203.0.113.3:5060"))                                                            // deny-list: the first event falls out
	all := g.Recent(EventFilter{}, 0)
	if len(all) != 5 {
		t.Fatalf("%d events", len(all))
	}
	if all[0].Source != "203.0.113.3:5060" || all[4].Rule != RuleUnknownUser {
		t.Fatalf("not newest first: %+v", all)
	}
	tests := []struct {
		name  string
		f     EventFilter
		limit int
		want  []string // sources
	}{
		{"limit", EventFilter{}, 2, []string{"203.0.113.3:5060", "203.0.113.2:5060"}},
		{"rule", EventFilter{Rule: RuleDenyList}, 0, []string{"203.0.113.3:5060", "203.0.113.2:5060"}},
		{"source prefix", EventFilter{Source: netip.MustParsePrefix("198.51.100.0/24")}, 0, []string{"198.51.100.2:5060", "198.51.100.1:5060"}},
		{"source v6", EventFilter{Source: netip.MustParsePrefix("2001:db8::/32")}, 0, []string{"[2001:db8::5]:5060"}},
		{"source mapped", EventFilter{Source: netip.MustParsePrefix("::ffff:203.0.113.2/128")}, 0, []string{"203.0.113.2:5060"}},
		{"since", EventFilter{Since: start.Add(time.Second)}, 0, []string{"203.0.113.3:5060", "203.0.113.2:5060", "[2001:db8::5]:5060"}},
		{"room", EventFilter{Room: "boardroom"}, 0, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, e := range g.Recent(tt.f, tt.limit) {
			got = append(got, e.Source)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	c := g.Counts()
	if c[RuleDenyList] != 3 || c[RuleUnknownUser] != 1 || c[RuleRelay] != 1 || c[RuleMaxForwards] != 1 || c[RuleScanner] != 0 {
		t.Fatalf("counts = %v", c)
	}
	if len(c) != len(Rules()) {
		t.Fatalf("counts lack rules: %v", c)
	}
}

func TestSubscribe(t *testing.T) {
	g, _, _ := newTestGuard(t, func(c *Config) { c.Deny = []string{"203.0.113.0/24"} })
	ctx, cancel := context.WithCancel(context.Background())
	fast := g.Subscribe(ctx)
	slow := g.Subscribe(ctx) // never read until the end
	const n = 200
	done := make(chan int)
	go func() {
		got := 0
		for e := range fast {
			if e.Rule != RuleDenyList {
				t.Errorf("event %+v", e)
			}
			got++
			if got == n {
				break
			}
		}
		done <- got
	}()
	for i := range n {
		g.Check(invite(netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 5060).String()))
		if i%32 == 31 {
			time.Sleep(time.Millisecond) // let the fast reader keep up with its 64-event buffer
		}
	}
	select {
	case got := <-done:
		if got != n {
			t.Fatalf("fast subscriber got %d", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fast subscriber stuck")
	}
	if d := g.Stats().DroppedEvents; d < n-64 {
		t.Fatalf("slow subscriber: %d dropped", d)
	}
	cancel()
	for range slow { // drains the buffer, then ends: the channel is closed
	}
	for range fast {
	}
}

// recordHandler captures log records.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r)
	h.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Message == msg {
			n++
		}
	}
	return n
}

func TestRefusalLogsAreRateLimited(t *testing.T) {
	h := &recordHandler{}
	g, _, clk := newTestGuard(t, func(c *Config) { c.Logger = slog.New(h); c.Deny = []string{"203.0.113.0/24"} })
	const msg = "guard refused request"
	for range 50 {
		g.Check(invite("203.0.113.1:5060"))
	}
	g.Check(invite("203.0.113.2:5060"))                                                // another source
	g.Check(with(invite("198.51.100.1:5060"), func(r *Request) { r.MaxForwards = 0 })) // another rule
	g.Check(with(invite("198.51.100.1:5060"), func(r *Request) { r.MaxForwards = 0 })) // same again
	if n := h.count(msg); n != 3 {
		t.Fatalf("%d refusal logs in a minute", n)
	}
	if n := len(g.Recent(EventFilter{}, 0)); n != 53 {
		t.Fatalf("every refusal is an event: %d", n)
	}
	clk.Add(time.Minute)
	g.Check(invite("203.0.113.1:5060"))
	if n := h.count(msg); n != 4 {
		t.Fatalf("next minute: %d logs", n)
	}
	h.mu.Lock()
	last := h.recs[len(h.recs)-1]
	h.mu.Unlock()
	var suppressed int64
	last.Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed_last_minute" {
			suppressed = a.Value.Int64()
		}
		return true
	})
	if suppressed != 50 {
		t.Fatalf("suppressed = %d", suppressed)
	}
}

package cluster

import (
	"testing"
	"time"
)

// TestMemberClockOffset: the leader's pings measure each member's clock against its own, for
// `portcullis doctor`: a member whose clock is 3 s ahead shows a ClockOffset of about 3 s, one
// on time about 0.
func TestMemberClockOffset(t *testing.T) {
	c := newTestCluster(t)
	a := c.start("a", nil)
	if err := a.n.WaitLeader(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	tok, err := a.n.JoinToken(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c.start("b", func(cfg *Config) {
		cfg.JoinToken, cfg.Join = tok, []string{a.addr}
		cfg.clock = func() time.Time { return time.Now().Add(3 * time.Second) }
	})
	c.start("c", func(cfg *Config) { cfg.JoinToken, cfg.Join = tok, []string{a.addr} })
	near := func(d, want time.Duration) bool { return (d - want).Abs() < 500*time.Millisecond }
	waitFor(t, 15*time.Second, "clock offsets of b (+3s) and c (0)", func() bool {
		ok := 0
		for _, m := range a.n.Members() {
			switch {
			case m.ID == "b" && m.Healthy && near(m.ClockOffset, 3*time.Second):
				ok++
			case m.ID == "c" && m.Healthy && !m.LastContact.IsZero() && near(m.ClockOffset, 0):
				ok++
			}
		}
		return ok == 2
	})
	// A follower asks the leader: it sees the same offsets.
	for _, m := range c.node("c").n.Members() {
		if m.ID == "b" && !near(m.ClockOffset, 3*time.Second) {
			t.Fatalf("from a follower: b's offset %v", m.ClockOffset)
		}
	}
}

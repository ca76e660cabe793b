package cluster

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TestForwardedRetryAppliesOnce (issue #15 item 1): a follower forwards a write; the leader
// applies it and freezes before its answer leaves (a reply lost, a leader dead). The follower
// sends the write again to the new leader: Propose succeeds and the effect is once, for every
// kind that is not idempotent (a call record, an audit line) and for a delete (which answered
// "not found" the second time). Before (seen failing with envelopes disabled): the record and
// the audit line failed with an unknown outcome (not re-sent), the ban lift answered not found.
func TestForwardedRetryAppliesOnce(t *testing.T) {
	c := newTestCluster(t)
	var mu sync.Mutex
	lose := false // the next forwarded write's answer is lost: its leader freezes
	var hold chan struct{}
	startThreeWith(t, c, func(_ string, cfg *Config) {
		addr := cfg.Bind
		cfg.ApplyTimeout = 10 * time.Second
		cfg.afterForwardedApply = func() {
			mu.Lock()
			if !lose {
				mu.Unlock()
				return
			}
			lose = false
			c.net.freeze(addr)
			h := hold
			mu.Unlock()
			<-h // the answer never leaves while frozen (a dead leader's would not)
		}
	})
	ctx := ctxT(t, 2*time.Minute)
	at := time.Now().UTC().Truncate(time.Second)
	ban := netip.MustParsePrefix("198.51.100.0/24")
	rows := []struct {
		name    string
		setup   state.Command
		cmd     state.Command
		count   func(st *state.State) int
		enqueue bool // queued (Enqueue, retried by the batcher) rather than proposed
		fresh   bool // the follower has heard nothing from the leader yet (it just restarted)
	}{
		{"call record", state.PutCall(state.Call{ID: "call-1", Room: "r", Node: "a", Started: at}),
			state.EndCall(state.CallRecord{Call: state.Call{ID: "call-1", Room: "r", Node: "a", Started: at},
				Ended: at, EndReason: "bye", Status: 200}),
			func(st *state.State) int { return len(st.Records(state.RecordQuery{Limit: 100})) }, false, false},
		{"audit line", state.PutRoom(state.Room{Name: "r"}),
			state.Audit(state.AuditEntry{Time: at, Who: "t1", Action: "ban", Target: ban.String(), Node: "x"}),
			func(st *state.State) int { return len(st.AuditLog(0, 100)) }, false, false},
		{"ban lifted", state.PutBan(state.Ban{Prefix: ban, Until: at.Add(time.Hour)}), state.LiftBan(ban),
			func(st *state.State) int { return 1 - len(st.Bans(at)) }, false, false},
		{"queued call record", state.PutCall(state.Call{ID: "call-2", Room: "r", Node: "a", Started: at}),
			state.EndCall(state.CallRecord{Call: state.Call{ID: "call-2", Room: "r", Node: "a", Started: at},
				Ended: at, EndReason: "bye", Status: 200}),
			func(st *state.State) int {
				return len(st.Records(state.RecordQuery{Limit: 100})) - 1 // the first row's
			}, true, false},
		// Seen in the chaos test (a call record applied twice): a follower that restarted and
		// had not heard the leader yet wrapped the write (the state records that every member
		// applies envelopes) but unwrapped it again before sending it (the leader had not said
		// so), and then sent the unwrapped write again.
		{"call record from a follower that has not heard the leader", state.PutCall(state.Call{ID: "call-3", Room: "r", Node: "a", Started: at}),
			state.EndCall(state.CallRecord{Call: state.Call{ID: "call-3", Room: "r", Node: "a", Started: at},
				Ended: at, EndReason: "bye", Status: 200}),
			func(st *state.State) int {
				return len(st.Records(state.RecordQuery{Limit: 100})) - 2 // the first and fourth rows'
			}, false, true},
	}
	for _, r := range rows {
		old := c.leader(10 * time.Second)
		waitFor(t, 10*time.Second, "every member to know every member applies envelopes", func() bool {
			for _, tn := range c.running() {
				if !tn.n.recordedOnce() {
					return false
				}
			}
			return old.n.clusterOnce()
		})
		f := c.follower()
		// a forwarded write first: the follower learns the cluster applies envelopes
		if err := f.n.Propose(ctx, r.setup); err != nil {
			t.Fatalf("%s: setup: %v", r.name, err)
		}
		if r.fresh {
			f.n.leaderFormats.Store(0) // as after a restart: nothing heard from the leader
		}
		mu.Lock()
		lose, hold = true, make(chan struct{})
		mu.Unlock()
		start := time.Now()
		var err error
		if r.enqueue {
			f.n.Enqueue(r.cmd)
			err = f.n.Flush(ctx)
		} else {
			err = f.n.Propose(ctx, r.cmd)
		}
		took := time.Since(start)
		mu.Lock()
		lost := !lose
		lose = false
		mu.Unlock()
		if !lost {
			t.Fatalf("%s: the leader never applied the forwarded write", r.name)
		}
		if err != nil {
			t.Errorf("%s: Propose on %s with the answer of %s lost: %v", r.name, f.id, old.id, err)
		}
		close(hold)
		c.net.thaw()
		c.converge(30 * time.Second)
		if n := r.count(f.n.State()); n != 1 {
			t.Errorf("%s: effect applied %d times, want once", r.name, n)
		}
		t.Logf("%s: write on %s answered after %v (leader %s froze after applying it), %d duplicate skipped",
			r.name, f.id, took.Round(time.Millisecond), old.id, f.n.State().Duplicates())
	}
}

package cluster

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Many writers at once through a leader and a follower: their commands share log entries
// (state.CmdBatch), each writer gets its own command's result (a delete of a missing room
// fails, its neighbours in the entry do not), every node applies the same, and a restarted
// follower replays the batch entries from its log.
func TestGroupCommitResults(t *testing.T) {
	c := newTestCluster(t)
	startThree(t, c)
	lead := c.leader(5 * time.Second)
	fol := c.follower()
	ctx := ctxT(t, 60*time.Second)
	round := 0
	waitFor(t, 30*time.Second, "writes to share a log entry", func() bool {
		round++
		var wg sync.WaitGroup
		errs := make([]error, 64)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tn := lead
				if i%4 == 0 {
					tn = fol
				}
				if i%2 == 1 {
					errs[i] = tn.n.Propose(ctx, state.DeleteRoom(fmt.Sprintf("missing-%d-%d", round, i)))
				} else {
					errs[i] = tn.n.Propose(ctx, state.PutRoom(state.Room{Name: fmt.Sprintf("r-%d-%d", round, i)}))
				}
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if i%2 == 1 && !isAny(err, state.ErrNotFound) {
				t.Fatalf("round %d writer %d (delete missing): got %v, want state.ErrNotFound", round, i, err)
			}
			if i%2 == 0 && err != nil {
				t.Fatalf("round %d writer %d (put): %v", round, i, err)
			}
		}
		return lead.n.fsm.batches.Load() > 0
	})
	for r := 1; r <= round; r++ {
		for i := 0; i < 64; i += 2 {
			if _, ok := lead.n.State().Room(fmt.Sprintf("r-%d-%d", r, i)); !ok {
				t.Fatalf("room r-%d-%d missing on the leader", r, i)
			}
		}
	}
	h := c.converge(10 * time.Second)
	if fol.n.fsm.batches.Load() == 0 {
		t.Fatal("follower applied no batch entry")
	}
	c.kill(fol.id)
	c.restart(fol.id)
	if got := c.converge(10 * time.Second); got != h {
		t.Fatalf("state after replay %s, want %s", got, h)
	}
	t.Logf("rounds %d, leader applied %d batch entries for %d commands", round, lead.n.fsm.batches.Load(), lead.n.fsm.applied.Load())
}

// TestGroupCommitPacing: writes from many callers at once share log entries paced groupGap
// apart (far fewer appends than commands), while a lone caller writing one command at a time is
// not paced: each of its writes leaves at once.
func TestGroupCommitPacing(t *testing.T) {
	c := newTestCluster(t)
	a := c.start("a", nil)
	must(t, a.n.WaitLeader(ctxT(t, 5*time.Second)))
	ctx := ctxT(t, 60*time.Second)
	const lone = 200
	paced0 := a.n.group.paced.Load()
	for i := range lone {
		must(t, a.n.Propose(ctx, state.PutRoom(state.Room{Name: fmt.Sprintf("lone-%d", i)})))
	}
	// A background write of the node's own (a ping round's formats) may share a group with one of
	// the lone caller's now and then; a paced lone caller would wait on nearly every write.
	if p := a.n.group.paced.Load() - paced0; p > lone/20 {
		t.Fatalf("a lone caller's %d writes waited for the pacing gap %d times", lone, p)
	}
	const callers, each = 64, 20
	paced0, w0 := a.n.group.paced.Load(), a.n.logWrites.Load()
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- a.n.Propose(ctx, state.PutRoom(state.Room{Name: fmt.Sprintf("busy-%d-%d", g, i)}))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	paced, appends := a.n.group.paced.Load()-paced0, a.n.logWrites.Load()-w0
	if paced == 0 || appends*4 > callers*each {
		t.Fatalf("%d callers wrote %d commands in %d log appends, %d entries paced: want paced entries and at most a quarter as many appends", callers, callers*each, appends, paced)
	}
	for g := range callers {
		if _, ok := a.n.State().Room(fmt.Sprintf("busy-%d-%d", g, each-1)); !ok {
			t.Fatalf("room busy-%d-%d missing", g, each-1)
		}
	}
	t.Logf("%d commands from %d callers: %d log appends, %d entries paced", callers*each, callers, appends, paced)
}

// TestLogWriteRate drives PORTCULLIS_LOGWRITE_SECONDS seconds of 2,000 calls/s (each call a
// PutCall and an EndCall, as the B2BUA queues them, half on the leader and half on a follower)
// through a 3-node cluster, with one entry per command, with group commit not paced and with
// group commit (paced), and reports the leader's log appends per second (each one bolt commit,
// with its fdatasyncs). These writes are queued (Enqueue): each node's batcher already gathers
// them for a few milliseconds, so pacing changes little here; it is REGISTERs, each its own
// caller, that it gathers (README).
func TestLogWriteRate(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("PORTCULLIS_LOGWRITE_SECONDS"))
	if secs <= 0 {
		t.Skip("set PORTCULLIS_LOGWRITE_SECONDS=5 to measure log appends at 2,000 calls/s")
	}
	const callsPerSec = 2000
	for _, mode := range []struct {
		name string
		max  int
		gap  time.Duration
	}{{"one entry per command", 1, -1}, {"group commit, not paced", groupMax, -1}, {"group commit", groupMax, 0}} {
		c := newTestCluster(t)
		mod := func(cfg *Config) { cfg.groupMax, cfg.groupGap = mode.max, mode.gap }
		a := c.start("a", mod)
		must(t, a.n.WaitLeader(ctxT(t, 5*time.Second)))
		tok, err := a.n.JoinToken(time.Minute)
		must(t, err)
		c.start("b", func(cfg *Config) { mod(cfg); cfg.Join = []string{a.addr}; cfg.JoinToken = tok })
		c.start("c", func(cfg *Config) { mod(cfg); cfg.Join = []string{a.addr}; cfg.JoinToken = tok })
		c.converge(10 * time.Second)
		lead, fol := c.leader(5*time.Second), c.follower()
		waitFor(t, 10*time.Second, "the leader to know every member applies batches", lead.n.allFormats.Load)
		w0, e0, i0 := lead.n.logWrites.Load(), lead.n.fsm.applied.Load(), lead.n.raft.LastIndex()
		start := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		for i := 0; time.Since(start) < time.Duration(secs)*time.Second; {
			<-tick.C
			due := int(time.Since(start).Seconds() * callsPerSec)
			for ; i < due; i++ {
				tn := lead
				if i%2 == 1 {
					tn = fol
				}
				id := "call-" + strconv.Itoa(i)
				call := state.Call{ID: id, Room: "room" + strconv.Itoa(i%500), Node: tn.id, Started: time.Now()}
				tn.n.Enqueue(state.PutCall(call))
				tn.n.Enqueue(state.EndCall(state.CallRecord{Call: call, Ended: time.Now()}))
			}
		}
		tick.Stop()
		for _, tn := range []*testNode{lead, fol} {
			must(t, tn.n.Flush(ctxT(t, 30*time.Second)))
		}
		el := time.Since(start).Seconds()
		w, e, ix := lead.n.logWrites.Load()-w0, lead.n.fsm.applied.Load()-e0, lead.n.raft.LastIndex()-i0
		t.Logf("%s: %d calls/s for %.1fs: leader applied %.0f commands/s in %.0f log entries/s with %.0f log appends/s (%.1f commands per append)",
			mode.name, callsPerSec, el, float64(e)/el, float64(ix)/el, float64(w)/el, float64(e)/float64(max(w, 1)))
		for _, tn := range c.all() {
			c.kill(tn.id)
		}
	}
}

// BenchmarkFSMApply is the state apply path a follower runs for every committed entry: decode
// and apply 64 hot commands (binding refreshes, or calls: PutCall then EndCall), as 64 entries
// (one per command) or as one batch entry. One op is one command.
func BenchmarkFSMApply(b *testing.B) {
	const n = 64
	now := time.Now()
	mixes := map[string][][]byte{}
	for i := range n {
		is := strconv.Itoa(i)
		mixes["bindings"] = append(mixes["bindings"], state.PutBinding(state.Binding{Room: "room" + is, Contact: "sip:room" + is + "@192.0.2.1:5060",
			Source: "192.0.2.1:5060", Transport: "UDP", Node: "a", CallID: "reg-" + is, CSeq: 7, UserAgent: "Room/1.0",
			Expires: now.Add(time.Hour), Updated: now}).Encode())
		call := state.Call{ID: "call-" + is, Room: "room" + is, Direction: state.Inbound, From: "sip:alice@example.com",
			To: "sip:room" + is + "@sbc.example.com", Source: "198.51.100.7:5060", Node: "a", State: state.CallAnswered,
			A:       state.Leg{CallID: "a-" + is, LocalTag: "lt", RemoteTag: "rt", Peer: "198.51.100.7:5060", Transport: "UDP"},
			B:       state.Leg{CallID: "b-" + is, LocalTag: "lt2", RemoteTag: "rt2", Peer: "192.0.2.1:5060", Transport: "UDP"},
			Started: now, Answered: now}
		if i%2 == 0 {
			mixes["calls"] = append(mixes["calls"], state.PutCall(call).Encode())
		} else {
			mixes["calls"] = append(mixes["calls"], state.EndCall(state.CallRecord{Call: call, Ended: now, EndReason: "bye", Status: 200}).Encode())
		}
	}
	for _, mix := range []string{"bindings", "calls"} {
		cmds := mixes[mix]
		for _, mode := range []string{"entry-per-command", "batch"} {
			b.Run(mix+"/"+mode, func(b *testing.B) {
				f := newFSM(state.New(), testLogger(b), nil)
				var logs []*raft.Log
				if mode == "batch" {
					logs = []*raft.Log{{Type: raft.LogCommand, Data: state.EncodeBatch(cmds)}}
				} else {
					for _, c := range cmds {
						logs = append(logs, &raft.Log{Type: raft.LogCommand, Data: c})
					}
				}
				b.ReportAllocs()
				start := time.Now()
				for i := 0; i < b.N; i += n {
					idx := uint64(i) + 1
					for j, l := range logs {
						l.Index = idx + uint64(j)
					}
					if out := f.ApplyBatch(logs); len(out) != len(logs) {
						b.Fatal("short answer")
					}
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commands/s")
			})
		}
	}
}

// During a rolling upgrade a member may be an older binary that stops on a batch entry or a
// binary payload: until every member says it applies them, the leader writes one JSON entry per
// command and followers forward JSON. Once the old member is upgraded, batches resume.
func TestOlderMemberGetsJSONEntries(t *testing.T) {
	c := newTestCluster(t)
	a := c.start("a", nil)
	must(t, a.n.WaitLeader(ctxT(t, 5*time.Second)))
	tok, err := a.n.JoinToken(time.Minute)
	must(t, err)
	c.start("b", func(cfg *Config) { cfg.Join = []string{a.addr}; cfg.JoinToken = tok })
	old := c.start("c", func(cfg *Config) { cfg.Join = []string{a.addr}; cfg.JoinToken = tok; cfg.formats = formatsJSON })
	c.converge(10 * time.Second)
	waitFor(t, 10*time.Second, "the leader to hear every member's formats", func() bool {
		l := c.leader(5 * time.Second)
		l.n.formatsMu.Lock()
		defer l.n.formatsMu.Unlock()
		return len(l.n.memberFormats) == 2
	})
	ctx := ctxT(t, 60*time.Second)
	burst := func(round int) {
		t.Helper()
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for { // a loaded machine may lose leadership: retry, as Enqueue does (idempotent)
					run := c.running()
					tn := run[i%len(run)]
					err := tn.n.Propose(ctx, state.PutBinding(state.Binding{Room: "r" + strconv.Itoa(i), Contact: "sip:" + strconv.Itoa(round) + "@x",
						Node: tn.id, Expires: time.Now().Add(time.Hour)}))
					if err == nil {
						return
					}
					if !isAny(err, ErrOutcomeUnknown, ErrNoLeader) || ctx.Err() != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	for round := range 5 {
		burst(round)
	}
	lead := c.leader(5 * time.Second)
	first, _ := lead.n.store.FirstIndex()
	last, _ := lead.n.store.LastIndex()
	hot := 0
	for i := first; i <= last; i++ {
		var l raft.Log
		must(t, lead.n.store.GetLog(i, &l))
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := state.DecodeCommand(l.Data)
		must(t, err)
		if cmd.Type == state.CmdBatch || cmd.Type == state.CmdOnce || cmd.Version != 1 {
			t.Fatalf("entry %d: %s v%d written while %s applies only JSON", i, cmd.Type, cmd.Version, old.id)
		}
		if cmd.Type == state.CmdPutBinding {
			hot++
		}
	}
	if hot < 5*64 { // retried writes may be there twice
		t.Fatalf("%d bindings in the log, want at least %d", hot, 5*64)
	}
	if old.n.fsm.haltErr() != nil {
		t.Fatal(old.n.fsm.haltErr())
	}
	// Upgrade c: batches come once the leader has heard from it.
	c.kill(old.id)
	old.cfg.formats = 0
	c.restart(old.id)
	round := 5
	waitFor(t, 30*time.Second, "batch entries after the upgrade", func() bool {
		burst(round)
		round++
		return c.leader(5*time.Second).n.fsm.batches.Load() > 0
	})
	c.converge(10 * time.Second)
}

package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// BenchmarkPropose measures a synchronous write (commit on a majority, fsync'd bolt log, apply)
// on a 1-node and a 3-node cluster, from the leader and from a follower (forwarded), one at a
// time and from parallel callers (Raft batches those).
func BenchmarkPropose(b *testing.B) {
	for _, size := range []int{1, 3} {
		c := newTestCluster(b)
		if size == 1 {
			a := c.start("a", nil)
			if err := a.n.WaitLeader(ctxT(b, 5*time.Second)); err != nil {
				b.Fatal(err)
			}
		} else {
			startThree(b, c)
		}
		lead := c.leader(5 * time.Second)
		targets := []*testNode{lead}
		if size > 1 {
			targets = append(targets, c.follower())
		}
		for _, tn := range targets {
			role := "leader"
			if tn.id != lead.id {
				role = "follower"
			}
			var seq atomic.Int64
			run := func(b *testing.B, parallel bool) {
				ctx := ctxT(b, time.Minute)
				cmd := func() state.Command {
					i := seq.Add(1)
					return state.PutBinding(state.Binding{Room: "bench", Contact: "sip:" + strconv.FormatInt(i%1000, 10) + "@x",
						Node: tn.id, Expires: time.Now().Add(time.Hour)})
				}
				b.ReportAllocs()
				start := time.Now()
				if parallel {
					b.SetParallelism(16) // 16 × GOMAXPROCS callers, like many REGISTERs at once
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := tn.n.Propose(ctx, cmd()); err != nil {
								b.Error(err)
								return
							}
						}
					})
				} else {
					for range b.N {
						if err := tn.n.Propose(ctx, cmd()); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
			}
			b.Run(fmt.Sprintf("nodes=%d/from=%s/sequential", size, role), func(b *testing.B) { run(b, false) })
			b.Run(fmt.Sprintf("nodes=%d/from=%s/parallel", size, role), func(b *testing.B) { run(b, true) })
		}
		for _, tn := range c.all() {
			c.kill(tn.id)
		}
	}
}

// TestFailoverTime kills the leader of a 3-node cluster PORTCULLIS_FAILOVER_RUNS times (10 for
// the figures in the README) and logs how long until a survivor leads and until a write from a
// survivor is committed (median, min, max). It asserts nothing about time: a figure, not a
// test. PORTCULLIS_TEST_DEFAULT_TIMEOUTS=1 measures the default Raft timeouts (the cluster
// section of deploy/portcullis.yaml), else the tests' tighter ones.
func TestFailoverTime(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("PORTCULLIS_FAILOVER_RUNS"))
	if runs <= 0 {
		t.Skip("set PORTCULLIS_FAILOVER_RUNS=10 to measure failover")
	}
	c := newTestCluster(t)
	startThree(t, c)
	var toLeader, toWrite []time.Duration
	for i := range runs {
		old := c.leader(10 * time.Second)
		var survivors []*testNode
		for _, tn := range c.running() {
			if tn.id != old.id {
				survivors = append(survivors, tn)
			}
		}
		killed := time.Now()
		c.kill(old.id)
		elected := make(chan time.Duration, 1)
		go func() {
			for time.Since(killed) < 20*time.Second {
				for _, tn := range survivors {
					if tn.n.IsLeader() {
						elected <- time.Since(killed)
						return
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
			elected <- -1
		}()
		writer := survivors[len(survivors)-1]
		// The survivor's Propose waits for the new leader and re-sends idempotent writes
		// whose outcome was unknown; a failure after that is retried here (and logged).
		for {
			err := writer.n.Propose(ctxT(t, 10*time.Second), state.PutRoom(state.Room{Name: fmt.Sprintf("failover-%d", i)}))
			if err == nil {
				break
			}
			if !errors.Is(err, ErrOutcomeUnknown) || time.Since(killed) > 10*time.Second {
				t.Fatalf("run %d: write after failover: %v", i, err)
			}
			t.Logf("run %d: retrying after %v", i, err)
		}
		d := time.Since(killed)
		e := <-elected
		toWrite = append(toWrite, d)
		toLeader = append(toLeader, e)
		nl := c.leader(5 * time.Second)
		t.Logf("run %d: leader %s killed, %s leads after %s, first write committed after %s", i, old.id, nl.id,
			e.Round(time.Millisecond), d.Round(time.Millisecond))
		c.restart(old.id)
		c.converge(10 * time.Second)
	}
	slices.Sort(toLeader)
	slices.Sort(toWrite)
	cfg := c.all()[0].cfg
	t.Logf("failover, %d leader kills, HeartbeatTimeout=%s ElectionTimeout=%s LeaderLeaseTimeout=%s:", runs,
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout)
	for _, f := range []struct {
		what string
		d    []time.Duration
	}{{"new leader", toLeader}, {"first write", toWrite}} {
		t.Logf("  %-11s median %s, min %s, max %s", f.what, f.d[len(f.d)/2].Round(time.Millisecond),
			f.d[0].Round(time.Millisecond), f.d[len(f.d)-1].Round(time.Millisecond))
	}
}

// TestSnapshotFigures reports snapshot size and timings for 10,000 rooms and 100,000 call
// records (PORTCULLIS_SNAPSHOT_FIGURES=1).
func TestSnapshotFigures(t *testing.T) {
	if os.Getenv("PORTCULLIS_SNAPSHOT_FIGURES") == "" {
		t.Skip("set PORTCULLIS_SNAPSHOT_FIGURES=1 to measure snapshots")
	}
	st := state.New()
	now := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	for i := range 10_000 {
		name := fmt.Sprintf("room-%05d", i)
		must(t, st.Apply(state.PutRoom(state.Room{Name: name, Inbound: state.InboundAllowlist,
			HA1MD5: "0123456789abcdef0123456789abcdef", HA1SHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			Allow: []string{"*@partner.example.com", "198.51.100.0/24"}, Updated: now})))
		must(t, st.Apply(state.PutBinding(state.Binding{Room: name, Contact: "sip:" + name + "@192.0.2.1:5060;transport=tls",
			Source: "192.0.2.1:40000", Transport: "TLS", Node: "edge1", CallID: "c" + name, CSeq: 7,
			UserAgent: "Cisco Codec/ce11", Expires: now.Add(time.Hour), Updated: now})))
	}
	for i := range 100_000 {
		must(t, st.Apply(state.EndCall(state.CallRecord{Call: state.Call{ID: fmt.Sprintf("call-%06d", i),
			Room: fmt.Sprintf("room-%05d", i%10_000), Direction: state.Inbound, From: "sip:alice@partner.example.com",
			To: "sip:boardroom@video.example.com", Source: "198.51.100.7:5061", Node: "edge1", State: state.CallAnswered,
			A:       state.Leg{CallID: fmt.Sprintf("a-%06d@198.51.100.7", i), LocalTag: "lt", RemoteTag: "rt", Peer: "198.51.100.7:5061", Transport: "TLS"},
			B:       state.Leg{CallID: fmt.Sprintf("b-%06d@portcullis", i), LocalTag: "lt2", RemoteTag: "rt2", Peer: "192.0.2.1:40000", Transport: "TLS"},
			Started: now, Answered: now.Add(time.Second)}, Ended: now.Add(time.Minute), Duration: time.Minute,
			EndReason: "bye", Status: 200})))
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)

	f := newFSM(st, testLogger(t), nil)
	start := time.Now()
	snap, err := f.Snapshot()
	must(t, err)
	freeze := time.Since(start)
	var raw countingWriter
	start = time.Now()
	_, err = st.Freeze().WriteTo(&raw)
	must(t, err)
	rawTime := time.Since(start)
	var buf bytes.Buffer
	start = time.Now()
	fs := snap.(*fsmSnapshot)
	must(t, writeSnapshot(&buf, fs.frozen, fs.lastCmd))
	persist := time.Since(start)
	size := buf.Len()
	f2 := newFSM(state.New(), testLogger(t), nil)
	start = time.Now()
	must(t, f2.Restore(io.NopCloser(&buf)))
	restore := time.Since(start)
	if f2.st.Hash() != st.Hash() {
		t.Fatal("restored state differs")
	}
	t.Logf("10,000 rooms + 10,000 bindings + 100,000 call records (heap %d MiB): Snapshot (freeze) %s; "+
		"canonical JSON %.1f MiB in %s; persisted snapshot (gzip) %.1f MiB in %s; Restore %s",
		ms.HeapAlloc>>20, freeze.Round(time.Microsecond), float64(raw.n)/(1<<20), rawTime.Round(time.Millisecond),
		float64(size)/(1<<20), persist.Round(time.Millisecond), restore.Round(time.Millisecond))
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkEnqueue measures fire-and-forget writes (registrations, call records) from a
// follower of a 3-node cluster: the batcher proposes up to 64 commands per round trip.
func BenchmarkEnqueue(b *testing.B) {
	c := newTestCluster(b)
	startThree(b, c)
	f := c.follower()
	ctx := ctxT(b, time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if i%8192 == 8191 {
			if err := f.n.Flush(ctx); err != nil { // stay within the queue: this measures throughput, not drops
				b.Fatal(err)
			}
		}
		f.n.Enqueue(state.PutBinding(state.Binding{Room: "bench", Contact: "sip:" + strconv.Itoa(i%1000) + "@x",
			Node: f.id, Expires: time.Now().Add(time.Hour)}))
	}
	if err := f.n.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	d := f.n.Stats().Dropped
	b.ReportMetric(float64(uint64(b.N)-d)/time.Since(start).Seconds(), "writes/s")
	b.ReportMetric(float64(d), "dropped")
}

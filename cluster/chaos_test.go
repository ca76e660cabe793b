package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TestChaos mixes writes from random nodes with leader kills, restarts and partitions, then
// checks that every acknowledged write is on every node and that no call record (a command
// that is not idempotent) was applied twice. PORTCULLIS_CHAOS_SEED and
// PORTCULLIS_CHAOS_DURATION (e.g. 2m) reproduce or lengthen a run (default 15 s);
// PORTCULLIS_CHAOS_NODES=5 runs it on five nodes.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PORTCULLIS_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	dur := 15 * time.Second
	if s := os.Getenv("PORTCULLIS_CHAOS_DURATION"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			dur = d
		}
	}
	t.Logf("seed %d (PORTCULLIS_CHAOS_SEED=%d to replay the schedule), duration %s", seed, seed, dur)
	rng := rand.New(rand.NewPCG(seed, 1))

	size := 3
	if s := os.Getenv("PORTCULLIS_CHAOS_NODES"); s != "" {
		size, _ = strconv.Atoi(s)
	}
	c := newTestCluster(t)
	ids := startN(t, c, size)

	var (
		mu        sync.Mutex
		ackRooms  []string
		ackCalls  []string
		attempted = map[string]bool{}
		failures  atomic.Int64
		writes    atomic.Int64
	)
	handle := func(id string) *Node {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.nodes[id].n
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()

	var wg sync.WaitGroup
	for w := range 3 {
		wrng := rand.New(rand.NewPCG(seed, uint64(w+2)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				n := handle(ids[wrng.IntN(len(ids))])
				if n == nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
				switch k := wrng.IntN(10); {
				case k < 5:
					name := fmt.Sprintf("room-%d-%d", w, i)
					mu.Lock()
					attempted[name] = true
					mu.Unlock()
					err := n.Propose(wctx, state.PutRoom(state.Room{Name: name}))
					mu.Lock()
					if err == nil {
						ackRooms = append(ackRooms, name)
					}
					mu.Unlock()
					countErr(&writes, &failures, err)
				case k < 9:
					id := fmt.Sprintf("call-%d-%d", w, i)
					mu.Lock()
					attempted[id] = true
					mu.Unlock()
					err := n.Propose(wctx, state.EndCall(state.CallRecord{Call: state.Call{ID: id, Room: "chaos"}, EndReason: "test"}))
					mu.Lock()
					if err == nil {
						ackCalls = append(ackCalls, id)
					}
					mu.Unlock()
					countErr(&writes, &failures, err)
				default: // fire and forget: may be lost, must never be applied twice
					id := fmt.Sprintf("queued-%d-%d", w, i)
					mu.Lock()
					attempted[id] = true
					mu.Unlock()
					n.Enqueue(state.EndCall(state.CallRecord{Call: state.Call{ID: id, Room: "chaos"}, EndReason: "queued"}))
				}
				wcancel()
			}
		}()
	}

	// Chaos: one fault at a time, so a majority is usually there to make progress.
	events := 0
	for ctx.Err() == nil {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		if ctx.Err() != nil {
			break
		}
		events++
		switch k := rng.IntN(4); k {
		case 0, 1: // kill the leader (or anyone if none), restart it a little later
			victim := ids[rng.IntN(len(ids))]
			if l := c.agreedLeader(); l != nil && k == 0 {
				victim = l.id
			}
			t.Logf("chaos: kill %s", victim)
			c.kill(victim)
			time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
			c.restart(victim)
		case 2: // isolate one node, heal later
			victim := c.node(ids[rng.IntN(len(ids))])
			var rest []string
			for _, id := range ids {
				if id != victim.id {
					rest = append(rest, c.node(id).addr)
				}
			}
			t.Logf("chaos: isolate %s", victim.id)
			c.net.partition([]string{victim.addr}, rest)
			time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
			c.net.heal()
		case 3: // a quiet spell
		}
	}
	wg.Wait()
	c.net.heal()
	for _, id := range ids {
		if handle(id) == nil {
			c.restart(id)
		}
	}
	c.leader(10 * time.Second)
	for _, id := range ids {
		if err := handle(id).Flush(ctxT(t, 10*time.Second)); err != nil {
			t.Fatalf("%s: flush: %v", id, err)
		}
	}
	h := ""
	for _, id := range ids {
		n := handle(id)
		if err := n.Consistent(ctxT(t, 10*time.Second)); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	h = c.converge(10 * time.Second)

	t.Logf("%d chaos events, %d synchronous writes (%d acknowledged rooms, %d acknowledged calls, %d failed)",
		events, writes.Load(), len(ackRooms), len(ackCalls), failures.Load())
	for _, id := range ids {
		st := handle(id).State()
		for _, name := range ackRooms {
			if _, ok := st.Room(name); !ok {
				t.Fatalf("%s: acknowledged room %s missing", id, name)
			}
		}
		seen := map[string]int{}
		for _, r := range st.Records(state.RecordQuery{Limit: 1 << 30}) {
			seen[r.ID]++
		}
		for _, cid := range ackCalls {
			if seen[cid] == 0 {
				t.Fatalf("%s: acknowledged call record %s missing", id, cid)
			}
		}
		for cid, k := range seen {
			if k > 1 {
				t.Fatalf("%s: call record %s applied %d times", id, cid, k)
			}
			if !attempted[cid] {
				t.Fatalf("%s: call record %s was never written", id, cid)
			}
		}
		for _, r := range st.Rooms() {
			if !attempted[r.Name] {
				t.Fatalf("%s: room %s was never written", id, r.Name)
			}
		}
		if st.Hash() != h {
			t.Fatalf("%s diverged", id)
		}
	}
}

func countErr(writes, failures *atomic.Int64, err error) {
	writes.Add(1)
	if err != nil {
		failures.Add(1)
	}
}

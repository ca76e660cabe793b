package cluster

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Commit nudges. A follower that forwarded a write waits until its own FSM has applied it
// (read-your-write, followleader.go), and a follower learns that an entry committed only from
// the leader's next AppendEntries: one that carries newer entries, or the one hashicorp/raft
// sends after CommitTimeout without any (20-40 ms by default). When a follower's own writes
// are all there is to replicate (its callers wait for their answers before writing more), no
// newer entry comes and every forwarded write waited that long: the follower's writes ran at
// a few percent of the leader's.
//
// So after answering a forwarded write, the leader makes sure an entry is appended after the
// write committed: if none was, it appends a Raft barrier (a log entry without an FSM command,
// which every version applies), and the AppendEntries that replicates it carries the commit
// index. It waits nudgeDelay first: under load the next write is appended by then and carries
// it, and no barrier is written. At most one barrier is in flight at a time.

// nudgeDelay is how long the leader waits for a newer entry before it appends a barrier: a
// lone forwarded write waits this much longer, rather than CommitTimeout.
const nudgeDelay = time.Millisecond

// nudger appends a barrier when a follower would otherwise wait for CommitTimeout.
type nudger struct {
	r *raft.Raft
	// mark is the highest last-log index seen after answering a forwarded write: an entry
	// above it was appended after that write committed, so its AppendEntries carries the
	// commit to the followers.
	mark    atomic.Uint64
	kick    chan struct{}
	timeout func() time.Duration
}

func newNudger(r *raft.Raft, timeout func() time.Duration) *nudger {
	return &nudger{r: r, kick: make(chan struct{}, 1), timeout: timeout}
}

// answered notes that a forwarded write applied on this leader was answered: the followers
// must learn of its commit soon.
func (g *nudger) answered() {
	m := g.r.LastIndex()
	for {
		old := g.mark.Load()
		if m <= old || g.mark.CompareAndSwap(old, m) {
			break
		}
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// run appends barriers while no entry newer than the mark has been appended, until ctx ends.
func (g *nudger) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		}
		if !sleepCtx(ctx, nudgeDelay) {
			return
		}
		for g.r.LastIndex() <= g.mark.Load() && g.r.State() == raft.Leader {
			if err := g.barrier(ctx); err != nil {
				break // not the leader any more, or stopping: nobody to nudge
			}
		}
	}
}

// barrier appends a barrier and waits until it is applied (so one is in flight at a time).
func (g *nudger) barrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, g.timeout())
	defer cancel()
	f := g.r.Barrier(g.timeout())
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

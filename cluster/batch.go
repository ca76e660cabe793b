package cluster

import (
	"cmp"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Group commit. Every write applied on the leader (Propose, Enqueue's batches, writes forwarded
// by followers) goes through one committer goroutine. While fewer than groupInflight Raft entries
// are in flight, what is queued leaves at once (no added latency when idle); while the pipe is
// full, writes gather for up to groupWait or groupMax commands and leave as ONE log entry (a
// state.CmdBatch, or the plain command when there is only one), so many writes share one
// append, one fsync on each node and one FSM dispatch. Each caller gets the result of its own
// commands once the entry has committed and been applied, as before: nothing is acknowledged
// earlier.
//
// Pacing: while writes come from several callers at once (the last entry carried more than one
// caller's), an entry leaves no sooner than groupGap after the previous one, gathering what
// arrives meanwhile. Without it an entry left whenever the pipe had room, so the number of
// appends followed the disk (one per fsync, ~560/s at 4,000 REGISTERs/s: a bolt commit with two
// fdatasyncs each, a quarter of the node's CPU); with it they are bounded by 1/groupGap and
// each carries more. A lone caller (one write at a time, as a node writing its config's rooms
// at start) is never paced: each of its writes leaves at once, as before.
const (
	groupWait     = 2 * time.Millisecond
	groupGap      = 3 * time.Millisecond
	groupMax      = 512
	groupInflight = 4
)

var errBatchResults = fmt.Errorf("%w: the FSM answered a batch with the wrong number of results", ErrOutcomeUnknown)

// groupReq is one caller's encoded commands and where its results go (buffered: the committer
// never blocks on a caller that gave up).
type groupReq struct {
	cmds [][]byte
	res  chan []applyResult
}

// applyResult is the outcome of one command: err is Raft's (the entry did not commit, or its
// outcome is unknown), resp the FSM's answer for the command once it did.
type applyResult struct {
	resp  error
	err   error
	index uint64 // the log index of the entry that carried the command, once it committed
}

type committer struct {
	raft    *raft.Raft
	timeout func() time.Duration
	in      chan groupReq
	slots   chan struct{}
	max     int           // commands per entry; 1 writes one entry per command (benchmarks compare)
	gap     time.Duration // pacing under concurrent writes (groupGap; 0: none)
	paced   atomic.Uint64 // entries that waited for the gap (tests)
	// modern reports whether every member applies batch entries and binary payloads; until it
	// does, the committer writes one plain JSON entry per command, as older binaries did.
	modern func() bool
	// once reports whether every member applies state.CmdOnce envelopes; until it does, the
	// committer writes the commands inside them.
	once func() bool
}

func newCommitter(r *raft.Raft, timeout func() time.Duration, max int, gap time.Duration) *committer {
	return &committer{raft: r, timeout: timeout, in: make(chan groupReq, 1024),
		slots: make(chan struct{}, groupInflight), max: max, gap: gap}
}

// submit hands cmds to the committer and waits for their results or ctx. When ctx ends first
// the write may still commit: the results then carry ctx's error (callers report it as an
// unknown outcome).
func (c *committer) submit(ctx context.Context, cmds [][]byte) []applyResult {
	req := groupReq{cmds: cmds, res: make(chan []applyResult, 1)}
	fail := func(err error) []applyResult {
		out := make([]applyResult, len(cmds))
		for i := range out {
			out[i].err = err
		}
		return out
	}
	select {
	case c.in <- req:
	case <-ctx.Done():
		return fail(raft.ErrEnqueueTimeout) // never queued: nothing was appended
	}
	select {
	case r := <-req.res:
		return r
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// run is the committer loop; it returns when ctx ends (callers' contexts end with the node's).
func (c *committer) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	var last time.Time // when the previous entry left
	lastCallers := 0   // how many callers' writes it carried
	for {
		var group []groupReq
		count := 0
		select {
		case <-ctx.Done():
			return
		case r := <-c.in:
			group, count = append(group, r), len(r.cmds)
		}
		if wait := c.gap - time.Since(last); lastCallers > 1 && wait > 0 {
			c.paced.Add(1)
			timer.Reset(wait)
		pace:
			for count < groupMax {
				select {
				case r := <-c.in:
					group, count = append(group, r), count+len(r.cmds)
				case <-timer.C:
					break pace
				case <-ctx.Done():
					return
				}
			}
		}
		timer.Reset(groupWait) // (Go 1.23 timers: a Reset drops a fire not yet received)
		haveSlot := false
	collect:
		for count < groupMax {
			select {
			case r := <-c.in:
				group, count = append(group, r), count+len(r.cmds)
				continue
			default:
			}
			select { // nothing more queued: leave as soon as the pipe has room
			case c.slots <- struct{}{}:
				haveSlot = true
				break collect
			case r := <-c.in:
				group, count = append(group, r), count+len(r.cmds)
			case <-timer.C:
				break collect
			case <-ctx.Done():
				return
			}
		}
		if !haveSlot {
			select {
			case c.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		last, lastCallers = time.Now(), len(group)
		c.flush(group, count)
	}
}

// flush appends the group as entries of at most max commands and answers each caller after
// commit, from its own goroutine so the committer goes on gathering. It owns one slot.
func (c *committer) flush(group []groupReq, count int) {
	var entries [][]byte
	var sizes []int // commands per entry
	all := make([][]byte, 0, count)
	for _, r := range group {
		all = append(all, r.cmds...)
	}
	per := c.max
	if c.once != nil && !c.once() {
		all = unwrapAll(all)
	}
	if c.modern != nil && !c.modern() {
		per = 1
		for i, b := range all {
			if l, err := state.Legacy(b); err == nil {
				all[i] = l
			} // else: leave it; the FSM answers its error to its caller
		}
	}
	for len(all) > 0 {
		k := min(len(all), per)
		if k == 1 {
			entries = append(entries, all[0])
		} else {
			entries = append(entries, state.EncodeBatch(all[:k]))
		}
		sizes = append(sizes, k)
		all = all[k:]
	}
	timeout := c.timeout()
	futs := make([]raft.ApplyFuture, len(entries))
	for i, e := range entries {
		futs[i] = c.raft.Apply(e, timeout)
	}
	go func() {
		defer func() { <-c.slots }()
		results := make([]applyResult, 0, count)
		for i, f := range futs {
			k := sizes[i]
			if err := f.Error(); err != nil {
				results = appendN(results, applyResult{err: err}, k)
				continue
			}
			idx := f.Index()
			switch resp := f.Response().(type) {
			case []error:
				if len(resp) != k { // cannot happen: the FSM answers one result per command
					results = appendN(results, applyResult{err: errBatchResults}, k)
					continue
				}
				for _, e := range resp {
					results = append(results, applyResult{resp: e, index: idx})
				}
			case error: // one command, or the whole entry refused (the node halted)
				results = appendN(results, applyResult{resp: resp, index: idx}, k)
			default:
				results = appendN(results, applyResult{index: idx}, k)
			}
		}
		for _, r := range group {
			k := len(r.cmds)
			r.res <- results[:k:k]
			results = results[k:]
		}
	}()
}

func appendN(s []applyResult, r applyResult, n int) []applyResult {
	for range n {
		s = append(s, r)
	}
	return s
}

// Log formats. A node says which it applies (ping); the leader writes batch entries and binary
// payloads only once every member of the configuration has said it applies them, and tells
// followers (apply answers), which forward JSON until then. So during a rolling upgrade no older
// member is sent an entry it would have to stop on.
const (
	formatsJSON = 1 // one JSON command per entry: what every binary applies
	// formatsModern: state.CmdBatch entries and binary payloads at state.binVersion. It was 2
	// before binary payloads carried the legs' dialog state (version 3): a member that says 2
	// gets JSON, which it decodes (ignoring the new fields), rather than payloads it stops on.
	formatsModern = 3
	formatsOnce   = 4 // and state.CmdOnce envelopes (once.go)
)

// logFormats is what this node applies.
func (n *Node) logFormats() int { return cmp.Or(n.cfg.formats, formatsOnce) }

// clusterFormats is what every member applies, as far as this leader knows.
func (n *Node) clusterFormats() int {
	switch {
	case n.clusterOnce():
		return formatsOnce
	case n.allFormats.Load():
		return formatsModern
	}
	return formatsJSON
}

func (n *Node) sawFormats(id string, f int) {
	n.formatsMu.Lock()
	defer n.formatsMu.Unlock()
	if n.memberFormats == nil {
		n.memberFormats = map[string]int{}
	}
	n.memberFormats[id] = f
}

// updateFormats recomputes allFormats over the configuration's servers (after a ping round).
func (n *Node) updateFormats(servers []raft.Server) {
	n.formatsMu.Lock()
	least, known := n.logFormats(), true
	for _, s := range servers {
		if string(s.ID) != n.cfg.NodeID {
			f, ok := n.memberFormats[string(s.ID)]
			least, known = min(least, f), known && ok
		}
	}
	n.formatsMu.Unlock()
	n.allFormats.Store(least >= formatsModern)
	switch {
	case least >= formatsOnce:
		n.onceKnown.Store(onceAll)
	case known:
		n.onceKnown.Store(onceNotAll)
	default:
		n.onceKnown.Store(onceUnknown) // clusterOnce asks the state (once.go)
	}
	if known {
		n.recordFormats(least, servers)
	}
}

// forLeader re-encodes commands as JSON unless every member applies binary payloads, and
// unwraps envelopes unless every member applies those, as far as this follower knows
// (leaderFormat: what the leader last said, else what the state records).
func (n *Node) forLeader(cmds [][]byte) [][]byte {
	f := n.leaderFormat()
	if f < formatsOnce {
		cmds = unwrapAll(cmds)
	}
	if f >= formatsModern {
		return cmds
	}
	out := make([][]byte, len(cmds))
	for i, b := range cmds {
		if l, err := state.Legacy(b); err == nil {
			out[i] = l
		} else {
			out[i] = b
		}
	}
	return out
}

// countingLogStore counts the Raft log's appends: each is one bolt transaction, committed with
// its fsyncs, so the count is what group commit saves.
type countingLogStore struct {
	*raftboltdb.BoltStore
	writes *atomic.Uint64
}

func (s *countingLogStore) StoreLog(l *raft.Log) error {
	s.writes.Add(1)
	return s.BoltStore.StoreLog(l)
}

func (s *countingLogStore) StoreLogs(l []*raft.Log) error {
	s.writes.Add(1)
	return s.BoltStore.StoreLogs(l)
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Propose applies c through Raft and returns once it is applied on the leader (and committed
// on a majority), with the error state.Apply returned there. On a follower the command is
// forwarded to the leader. The wait is bounded by ctx and Config.ApplyTimeout.
//
// Errors wrap ErrNoLeader when no leader could be reached (the write was not applied),
// ErrOutcomeUnknown when leadership was lost or the deadline passed after the leader took the
// write (it may be applied), ErrHalted or ErrClosed when this node stopped, or the state
// package's errors (state.ErrNotFound, state.ErrBadPayload) from applying it.
func (n *Node) Propose(ctx context.Context, c state.Command) error {
	cmds := []state.Command{c}
	return n.proposeBatch(ctx, cmds, n.encode(cmds), true)[0]
}

// Enqueue queues c to be proposed soon without waiting: a batcher collects commands for a few
// milliseconds (or up to 64) and proposes them together, retrying a bounded number of times
// when no leader is reachable (and, for commands that are safe to apply twice, when the outcome
// is unknown). Failures are logged. If the queue is full the command is dropped and logged.
func (n *Node) Enqueue(c state.Command) {
	n.pending.Add(1)
	select {
	case n.queue <- c:
	default:
		n.pending.Add(-1)
		if d := n.dropped.Add(1); d&(d-1) == 0 { // log at 1, 2, 4, 8, ... drops
			n.log.Error("enqueue queue full: command dropped", "type", c.Type, "dropped_total", d)
		}
	}
}

// writeCtx bounds a write by ApplyTimeout and by the node's life.
func (n *Node) writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	stop := context.AfterFunc(n.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// proposeBatch proposes cmds, encoded as enc (once.go: a retry sends the same bytes); with
// readOwn, a follower returns once it has applied them too.
func (n *Node) proposeBatch(ctx context.Context, cmds []state.Command, enc [][]byte, readOwn bool) []error {
	start := time.Now()
	ctx, cancel := n.writeCtx(ctx)
	defer cancel()
	errs := n.applyAnywhere(ctx, enc, readOwn)
	for i, err := range errs {
		if err != nil {
			errs[i] = fmt.Errorf("cluster: propose %s: %w", cmds[i].Type, err)
		}
	}
	n.lastApply.Store(int64(time.Since(start)))
	n.proposed.Add(uint64(len(cmds)))
	return errs
}

// retryable reports whether err means the entry was not appended to any leader's log.
func retryable(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, ErrNotLeader)
}

// applyAnywhere applies encoded commands on the leader, wherever it is, until ctx ends. It
// returns one error per command.
func (n *Node) applyAnywhere(ctx context.Context, enc [][]byte, readOwn bool) []error {
	errs := make([]error, len(enc))
	pending := make([]int, len(enc))
	for i := range pending {
		pending[i] = i
	}
	var lastErr error
	for len(pending) > 0 {
		if err := n.stopped(); err != nil {
			for _, i := range pending {
				errs[i] = err
			}
			break
		}
		batch := make([][]byte, len(pending))
		for j, i := range pending {
			batch[j] = enc[i]
		}
		var res []error
		if n.raft.State() == raft.Leader {
			res = n.applyLocal(ctx, batch)
		} else {
			resp, err := n.forwardApply(ctx, batch, readOwn)
			if err != nil {
				if !errors.Is(err, ErrNoLeader) && n.stopped() == nil {
					err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
				}
				if n.resend(ctx, batch, err) {
					select {
					case <-ctx.Done():
					case <-time.After(leaderPollGap):
						continue
					}
				}
				for _, i := range pending {
					errs[i] = err
				}
				break
			}
			n.heardFormats(resp.Formats)
			res = make([]error, len(batch))
			for j := range batch {
				switch {
				case resp.Err != nil:
					res[j] = resp.Err.err()
				case len(resp.Errs) != len(batch):
					res[j] = fmt.Errorf("%w: leader answered %d results for %d commands", ErrOutcomeUnknown, len(resp.Errs), len(batch))
				default:
					res[j] = resp.Errs[j].err()
				}
			}
		}
		var again []int
		for j, i := range pending {
			if res[j] != nil && (retryable(res[j]) || n.resend(ctx, batch[j:j+1], res[j])) {
				lastErr = res[j]
				again = append(again, i)
				continue
			}
			errs[i] = res[j]
		}
		pending = again
		if len(pending) > 0 {
			select {
			case <-ctx.Done():
				err := n.noLeader(ctx, lastErr)
				for _, i := range pending {
					errs[i] = err
				}
				pending = nil
			case <-time.After(leaderPollGap):
			}
		}
	}
	return errs
}

func (n *Node) noLeader(ctx context.Context, last error) error {
	if err := n.stopped(); err != nil {
		return err
	}
	if last != nil {
		return fmt.Errorf("%w: %w (last: %v)", ErrNoLeader, ctx.Err(), last)
	}
	return fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
}

// applyLocal applies on this node, which believes it is the leader.
func (n *Node) applyLocal(ctx context.Context, batch [][]byte) []error {
	errs, _ := n.applyLocalIndex(ctx, batch)
	return errs
}

// applyLocalIndex is applyLocal that also returns the highest log index among the commands it
// applied (0 if none was): a follower that forwarded them waits until its own FSM has applied
// that index, so it reads its own writes.
func (n *Node) applyLocalIndex(ctx context.Context, batch [][]byte) ([]error, uint64) {
	var index uint64
	errs := make([]error, len(batch))
	for i, r := range n.group.submit(ctx, batch) { // group commit (batch.go)
		switch err := r.err; {
		case err == nil:
			index = max(index, r.index)
			errs[i] = r.resp
		case retryable(err):
			errs[i] = err
		case errors.Is(err, raft.ErrRaftShutdown):
			errs[i] = n.stoppedOr(ErrClosed)
		default: // leadership lost, aborted by restore, deadline: it may still commit
			if serr := n.stopped(); serr != nil {
				err = serr
			}
			errs[i] = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
	}
	return errs, index
}

func (n *Node) stoppedOr(def error) error {
	if err := n.fsm.haltErr(); err != nil {
		return err
	}
	if err := n.stopped(); err != nil {
		return err
	}
	return def
}

func deadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(DefaultApplyTimeout)
}

// await waits for a Raft future or ctx.
func (n *Node) await(ctx context.Context, f raft.Future) error {
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// callLeader sends req to the leader, following leader changes and retrying requests that were
// not delivered until ctx ends (then the error wraps ErrNoLeader). Errors after the request was
// delivered are returned as they are.
func (n *Node) callLeader(ctx context.Context, req *rpcRequest) (*rpcResponse, error) {
	var hint string // where the last node asked says the leader is
	var lastErr error
	for {
		if err := n.stopped(); err != nil {
			return nil, err
		}
		target, redirected := hint, hint != ""
		if target == "" {
			addr, _ := n.raft.LeaderWithID()
			target = string(addr)
		}
		hint = ""
		if target != "" {
			resp, err := n.rpc.call(ctx, target, req)
			switch {
			case err == nil && resp.Err != nil && errors.Is(resp.Err.err(), ErrNotLeader):
				hint = resp.Leader
				lastErr = resp.Err.err()
			case err == nil:
				return resp, nil
			case errors.Is(err, errNotSent):
				lastErr = err
			default:
				return nil, err
			}
		}
		if hint == n.advertise {
			hint = ""
		}
		if hint != "" && !redirected {
			continue // follow a redirect at once; a second one in a row waits (views in flux)
		}
		select {
		case <-ctx.Done():
			return nil, n.noLeader(ctx, lastErr)
		case <-time.After(leaderPollGap):
		}
	}
}

// batcher proposes enqueued commands in batches, in order.
func (n *Node) batcher() {
	for {
		var batch []state.Command
		select {
		case <-n.ctx.Done():
			n.drainLog()
			return
		case c := <-n.queue:
			batch = append(batch, c)
		}
		t := time.NewTimer(batchWait)
	collect:
		for len(batch) < batchMax {
			select {
			case c := <-n.queue:
				batch = append(batch, c)
			case <-t.C:
				break collect
			case <-n.ctx.Done():
				break collect
			}
		}
		t.Stop()
		n.proposeQueued(n.ctx, batch)
	}
}

func (n *Node) drainLog() {
	if k := len(n.queue); k > 0 {
		n.log.Warn("node stopped with queued commands not proposed", "count", k)
	}
}

// Flush waits until every command queued by Enqueue so far has been proposed (applied or given
// up on), or ctx ends. Leave calls it; tests use it.
func (n *Node) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n.pending.Load() > 0 {
		if err := n.stopped(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: flush: %d commands still queued: %w", n.pending.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func (n *Node) proposeQueued(ctx context.Context, batch []state.Command) {
	defer func() { n.pending.Add(-int64(len(batch))) }() // what is left when we give up
	backoff := 50 * time.Millisecond
	enc := n.encode(batch) // once: every try sends the same envelopes
	for try := 1; len(batch) > 0; try++ {
		errs := n.proposeBatch(ctx, batch, enc, false) // nobody waits to read them
		var again []state.Command
		var againEnc [][]byte
		for i, err := range errs {
			if err == nil {
				n.pending.Add(-1)
				continue
			}
			stop := n.stopped() != nil || ctx.Err() != nil
			if !stop && try < enqueueTries && (errors.Is(err, ErrNoLeader) ||
				errors.Is(err, ErrOutcomeUnknown) && repeatable(enc[i])) {
				again, againEnc = append(again, batch[i]), append(againEnc, enc[i])
				continue
			}
			n.pending.Add(-1)
			n.log.Warn("queued command failed", "type", batch[i].Type, "tries", try, "error", err)
		}
		batch, enc = again, againEnc
		if len(batch) > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
				backoff *= 2
			}
		}
	}
}

// Consistent returns once every write acknowledged before the call is applied to this node's
// State, so a read after it is linearizable. On the leader it commits a Raft barrier (which
// also proves leadership); on a follower it asks the leader for a barrier and the index of the
// last command, then waits until the local FSM has applied that index.
func (n *Node) Consistent(ctx context.Context) error {
	ctx, cancel := n.writeCtx(ctx)
	defer cancel()
	for {
		if n.raft.State() == raft.Leader {
			err := n.await(ctx, n.raft.Barrier(time.Until(deadline(ctx))))
			if err == nil {
				n.markReady()
				return nil
			}
			if !retryable(err) {
				return fmt.Errorf("cluster: consistent read: %w", err)
			}
		}
		resp, err := n.callLeader(ctx, &rpcRequest{Op: opBarrier})
		if err == nil && resp.Err != nil {
			err = resp.Err.err()
		}
		if err != nil {
			if retryable(err) && ctx.Err() == nil {
				continue
			}
			return fmt.Errorf("cluster: consistent read: %w", err)
		}
		select {
		case <-n.fsm.waitIndex(resp.Index):
			n.markReady()
			return nil
		case <-ctx.Done():
			return fmt.Errorf("cluster: consistent read: waiting for index %d: %w", resp.Index, n.noLeader(ctx, nil))
		}
	}
}

// handleConn serves one accepted RPC or join connection.
func (n *Node) handleConn(c net.Conn, service byte) {
	switch service {
	case muxRPC:
		serveRPC(c, rpcIdle, n.handleRPC)
	case muxJoin:
		serveRPC(c, handshakeTimeout, n.handleCertRequest)
	}
}

// handleRPC answers a member's request. Leader-only operations answer ErrNotLeader with the
// leader's address when this node is not the leader; the caller retries there.
func (n *Node) handleRPC(req *rpcRequest) *rpcResponse {
	if req.Op == opPing {
		if req.Formats > 0 && n.raft.State() != raft.Leader {
			n.heardFormats(req.Formats)
		}
		now := time.Now
		if n.cfg.clock != nil {
			now = n.cfg.clock
		}
		return &rpcResponse{Time: now(), Formats: n.logFormats()}
	}
	if err := n.stopped(); err != nil {
		// Nothing was done: the caller may retry on the leader, wherever it is now.
		return &rpcResponse{Err: wireError(fmt.Errorf("%w: %s is stopping: %w", ErrNotLeader, n.cfg.NodeID, err))}
	}
	if n.raft.State() != raft.Leader {
		addr, _ := n.raft.LeaderWithID()
		return &rpcResponse{Err: wireError(ErrNotLeader), Leader: string(addr)}
	}
	ctx, cancel := n.writeCtx(n.ctx)
	defer cancel()
	switch req.Op {
	case opApply:
		errs, index := n.applyLocalIndex(ctx, req.Cmds)
		if index > 0 {
			n.nudge.answered() // the caller waits to apply it too (nudge.go)
		}
		if n.cfg.afterForwardedApply != nil {
			n.cfg.afterForwardedApply()
		}
		resp := &rpcResponse{Errs: make([]*rpcError, len(errs)), Index: index, Formats: n.clusterFormats()}
		for i, err := range errs {
			if retryable(err) {
				err = fmt.Errorf("%w: %w", ErrNotLeader, err)
			}
			resp.Errs[i] = wireError(err)
		}
		return resp
	case opBarrier:
		if err := n.await(ctx, n.raft.Barrier(time.Until(deadline(ctx)))); err != nil {
			if retryable(err) {
				err = fmt.Errorf("%w: %w", ErrNotLeader, err)
			}
			return &rpcResponse{Err: wireError(err)}
		}
		return &rpcResponse{Index: n.fsm.lastCmd.Load()}
	case opJoin:
		return &rpcResponse{Err: wireError(n.addVoter(ctx, req.ID, req.Addr))}
	case opRemove:
		return &rpcResponse{Err: wireError(n.removeLocal(ctx, req.ID))}
	case opMembers:
		return &rpcResponse{Members: n.localMembers()}
	}
	return &rpcResponse{Err: &rpcError{Msg: fmt.Sprintf("cluster: unknown rpc %q", req.Op)}}
}

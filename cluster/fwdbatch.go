package cluster

import (
	"context"
	"errors"
	"time"
)

// Group forwarding. Writes a follower forwards (Propose, and Enqueue's batches) share RPCs to
// the leader the way the leader's own writes share log entries (batch.go): while fewer than
// fwdInflight requests are in flight, a write leaves at once; while they all are, the writes
// that arrive meanwhile gather and leave together as ONE request of up to about fwdMax
// commands. Each caller gets the answers to its own commands and the request's log index, and
// handles errors as before (an error of the request is every caller's error). Without it every
// concurrent REGISTER on a follower was one request on its own pooled connection, and beyond
// the pool's 32 idle connections one new connection (dial and TLS handshake) per write.
const (
	fwdInflight = 8
	fwdMax      = 512
)

// fwdReq is one caller's commands and where its answer goes (buffered: the sender never
// blocks on a caller that gave up).
type fwdReq struct {
	ctx  context.Context
	cmds [][]byte
	res  chan fwdResult
}

type fwdResult struct {
	resp *rpcResponse
	err  error
}

type forwarder struct {
	n     *Node
	in    chan fwdReq
	slots chan struct{}
}

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, in: make(chan fwdReq, 1024), slots: make(chan struct{}, fwdInflight)}
}

// call sends cmds to the leader in one attempt, with whatever other writes are waiting, and
// returns the leader's answer restricted to cmds. When ctx ends first the write may still be
// applied (callers report ctx's error as an unknown outcome), unless it never left.
func (f *forwarder) call(ctx context.Context, cmds [][]byte) (*rpcResponse, error) {
	req := fwdReq{ctx: ctx, cmds: cmds, res: make(chan fwdResult, 1)}
	select {
	case f.in <- req:
	case <-ctx.Done():
		return nil, f.n.noLeader(ctx, nil) // never queued: nothing was sent
	}
	select {
	case r := <-req.res:
		return r.resp, r.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// the attempt ends by this deadline too: its answer (no leader, unknown) is due,
			// unless the write still waits for a request slot
			t := time.NewTimer(f.n.attemptTimeout())
			defer t.Stop()
			select {
			case r := <-req.res:
				return r.resp, r.err
			case <-t.C:
			}
		}
		return nil, ctx.Err()
	}
}

// run gathers waiting writes into requests until ctx (the node's life) ends.
func (f *forwarder) run(ctx context.Context) {
	for {
		var group []fwdReq
		select {
		case <-ctx.Done():
			return
		case r := <-f.in:
			group = append(group, r)
		}
		count := len(group[0].cmds)
		haveSlot := false
	collect:
		for count < fwdMax {
			select { // take what is already queued first
			case r := <-f.in:
				group, count = append(group, r), count+len(r.cmds)
				continue
			default:
			}
			select { // then leave as soon as a request may be in flight
			case f.slots <- struct{}{}:
				haveSlot = true
				break collect
			case r := <-f.in:
				group, count = append(group, r), count+len(r.cmds)
			case <-ctx.Done():
				return
			}
		}
		if !haveSlot {
			select {
			case f.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		if !f.n.goTracked(func() { f.send(ctx, group, count) }) {
			<-f.slots
			answer(group, nil, ErrClosed)
		}
	}
}

// send makes one attempt for the group (see forwardApply) and answers each caller. It owns
// one slot.
func (f *forwarder) send(ctx context.Context, group []fwdReq, count int) {
	defer func() { <-f.slots }()
	cmds := make([][]byte, 0, count)
	for _, r := range group {
		cmds = append(cmds, r.cmds...)
	}
	// the attempt ends by the earliest caller's deadline, as a caller's own attempt did: one
	// that ends with no leader found is ErrNoLeader to every caller, which may try again
	dl := time.Now().Add(f.n.attemptTimeout())
	for _, r := range group {
		if d, ok := r.ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
	}
	actx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	stop := f.n.cancelOnLeaderChange(actx, cancel)
	defer stop()
	resp, err := f.n.callLeader(actx, &rpcRequest{Op: opApply, Cmds: f.n.forLeader(cmds)})
	answer(group, resp, err)
}

// answer gives each caller the request's outcome, with the per-command answers of its own
// commands (left whole when the leader answered a different count: the caller reports that).
func answer(group []fwdReq, resp *rpcResponse, err error) {
	off := 0
	for _, r := range group {
		k := len(r.cmds)
		out := fwdResult{err: err}
		if err == nil {
			sub := *resp
			if len(resp.Errs) >= off+k && len(group) > 1 {
				sub.Errs = resp.Errs[off : off+k : off+k]
			}
			out.resp = &sub
		}
		off += k
		r.res <- out
	}
}

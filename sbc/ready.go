package sbc

import (
	"context"
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Readiness. A node serves from its copy of the replicated state, which after a start may be far
// behind the cluster (rooms, passwords, bans, tokens written while it was away). Until it has
// caught up (cluster.Node.WaitReady: the log applied up to the leader's commit index as of its
// start), written the rooms of its config and ended the calls its previous process owned, it is
// not ready: /readyz answers 503, every SIP request 503 with Retry-After (and nothing it refuses
// counts toward a ban), every admin API call 503 with a JSON error and Retry-After. A node
// without a cluster (an injected store) is ready once those writes are done.

// errNotReady is the node's health while it catches up.
var errNotReady = errors.New("catching up with the cluster")

// readyWait bounds how long Start waits for the node to be ready; after it, Start returns and
// the node keeps catching up, answering 503 meanwhile.
const readyWait = 30 * time.Second

// notReadyRetryAfter is the Retry-After (seconds) of a refusal while not ready.
const notReadyRetryAfter = "5"

// isReady reports whether the node serves.
func (n *Node) isReady() bool {
	select {
	case <-n.ready:
		return true
	default:
		return false
	}
}

// readiness is nil when the node is ready (admin.Deps.Ready).
func (n *Node) readiness() error {
	if n.isReady() {
		return nil
	}
	return errNotReady
}

// becomeReady catches up, does the writes a start needs, then opens the node. Each step is
// retried until it succeeds or ctx ends (no leader yet, quorum lost).
func (n *Node) becomeReady(ctx context.Context) {
	start := time.Now()
	if err := n.cluster.WaitReady(ctx); err != nil {
		return
	}
	for _, step := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"SIP realm", n.ensureRealm},
		{"rooms from config", n.applyConfigRooms},
		{"trunk key", n.ensureTrunkKey},
		{"end calls of the previous process", n.endOwnGhosts},
	} {
		wait := 100 * time.Millisecond
		for {
			err := step.do(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("not ready yet", "step", step.name, "error", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}
	n.readyOnce.Do(func() { close(n.ready) })
	n.log.Info("node ready", "took", time.Since(start).Round(time.Millisecond))
}

// awaitReady waits for becomeReady, at most readyWait or until ctx ends.
func (n *Node) awaitReady(ctx context.Context) {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-n.ready:
	case <-ctx.Done():
	case <-t.C:
		n.log.Warn("node not ready yet: answering 503 until it has caught up with the cluster", "waited", readyWait)
	}
}

// notReady answers a request while the node is not ready: 503 with Retry-After (an ACK gets
// nothing). It reports false when the node is ready.
func (n *Node) notReady(req *sip.Request, tx sip.ServerTransaction) bool {
	if n.isReady() {
		return false
	}
	if !req.IsAck() {
		res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", notReadyRetryAfter))
		n.respond(tx, res)
	}
	return true
}

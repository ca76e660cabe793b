package state

import (
	"context"
	"sync"
)

// Store is the seam through which the signalling node reads and changes the replicated state.
// Reads go to the local State; writes are proposed and return once applied (Propose) or are
// queued for batching (Enqueue) where signalling must not wait on a round trip.
// cluster.Node implements it over Raft; Local implements it in-process.
type Store interface {
	// State is the local copy of the state, for reads.
	State() *State
	// Propose applies c through the store and returns the result of applying it.
	Propose(ctx context.Context, c Command) error
	// Enqueue applies c soon, without waiting; failures are logged by the store.
	Enqueue(c Command)
}

// Local is a Store that applies commands directly to an in-process State: a node that shares
// its state with nobody (tools and tests of the packages above the cluster).
type Local struct {
	mu sync.Mutex // serialises writers so Apply order is well defined
	st *State
}

// NewLocal returns a Local store over a new empty State.
func NewLocal() *Local { return &Local{st: New()} }

// State returns the state.
func (l *Local) State() *State { return l.st }

// Propose applies c at once.
func (l *Local) Propose(ctx context.Context, c Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Apply(c)
}

// Enqueue applies c at once; errors are dropped (a Local store has nobody to tell).
func (l *Local) Enqueue(c Command) { _ = l.Propose(context.Background(), c) }

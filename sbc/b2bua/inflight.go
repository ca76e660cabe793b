package b2bua

import "sync"

// inflight counts work in flight (calls, BYEs awaiting their answer) for Drain. Unlike a
// sync.WaitGroup, work may start at any time, also while Drain waits with nothing in flight
// (a call kept for a room during a drain, an adopted call's BYE): Drain waits for a moment
// when nothing is in flight.
type inflight struct {
	mu      sync.Mutex
	n       int
	waiters []chan struct{}
}

func (f *inflight) add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n > 0 {
		return
	}
	for _, w := range f.waiters {
		close(w)
	}
	f.waiters = nil
}

// idle is closed once nothing is in flight (at once when nothing is).
func (f *inflight) idle() <-chan struct{} {
	ch := make(chan struct{})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n <= 0 {
		close(ch)
		return ch
	}
	f.waiters = append(f.waiters, ch)
	return ch
}

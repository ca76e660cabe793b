package b2bua

import (
	"sync"
	"testing"
)

// TestInflightStartsWhileDrainWaits: work may start from nothing while Drain waits (a call kept
// for a room during a drain, an adopted call's BYE). With a sync.WaitGroup that Add from zero
// during Wait is a misuse the race detector reports; idle only waits for a moment with
// nothing in flight.
func TestInflightStartsWhileDrainWaits(t *testing.T) {
	var f inflight
	select {
	case <-f.idle():
	default:
		t.Fatal("idle with nothing in flight is not closed")
	}
	f.add()
	idle := f.idle()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { f.add(); f.done() })
	}
	wg.Wait()
	select {
	case <-idle:
		t.Fatal("idle closed while one piece of work is still in flight")
	default:
	}
	f.done()
	<-idle
	f.add() // from zero, after a drain's wait ended: allowed
	f.done()
}

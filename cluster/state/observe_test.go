package state

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
)

// TestObserveCancel: a cancelled observer is no longer called and leaves the list (a guard
// replaced on every config reload used to stay registered for the life of the process), while
// commands are being applied concurrently; a Restore is announced as CmdRestored.
func TestObserveCancel(t *testing.T) {
	s := New()
	var kept, gone atomic.Int64
	var restored atomic.Bool
	s.Observe(func(c Command) {
		kept.Add(1)
		if c.Type == CmdRestored {
			restored.Store(true)
		}
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // apply while observers come and go (-race checks the copy-on-write list)
		defer wg.Done()
		for range 200 {
			_ = s.Apply(PutRoom(Room{Name: "r"}))
		}
	}()
	for range 100 {
		cancel := s.Observe(func(Command) { gone.Add(1) })
		cancel()
		cancel() // idempotent
	}
	wg.Wait()
	s.obsMu.RLock()
	n := len(s.observers)
	s.obsMu.RUnlock()
	if n != 1 {
		t.Fatalf("%d observers registered, want 1", n)
	}
	before := gone.Load()
	if err := s.Apply(PutRoom(Room{Name: "r2"})); err != nil {
		t.Fatal(err)
	}
	if gone.Load() != before {
		t.Fatal("a cancelled observer was called")
	}
	var buf bytes.Buffer
	if _, err := s.Freeze().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !restored.Load() || kept.Load() != 202 {
		t.Fatalf("restored %v, kept observer called %d times", restored.Load(), kept.Load())
	}
	if CmdRestored.String() != "restored" {
		t.Fatalf("CmdRestored.String() = %q", CmdRestored.String())
	}
	if err := s.Apply(Command{Type: CmdRestored, Version: 1}); err == nil {
		t.Fatal("CmdRestored was applied as a command")
	}
}

package state

import (
	"bytes"
	"errors"
	"testing"
)

// TestSinkCursor: a sink's cursor only moves forward (a former leader's late write changes
// nothing), survives a snapshot and restore, and a cursor without a sink name is refused.
func TestSinkCursor(t *testing.T) {
	s := New()
	for _, c := range []Command{SinkCursor("siem", 5), SinkCursor("siem", 9), SinkCursor("siem", 7), SinkCursor("file", 2)} {
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.SinkCursor("siem"); got != 9 {
		t.Fatalf("siem cursor %d, want 9", got)
	}
	if err := s.Apply(SinkCursor("", 3)); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("cursor without a sink: %v", err)
	}
	r := roundTrip(t, s)
	if r.SinkCursor("siem") != 9 || r.SinkCursor("file") != 2 || r.SinkCursor("other") != 0 {
		t.Fatalf("restored cursors siem=%d file=%d", r.SinkCursor("siem"), r.SinkCursor("file"))
	}
	if r.Hash() != s.Hash() {
		t.Fatal("restored state hashes differently")
	}
	// A state with no cursor keeps the snapshot bytes it had before cursors existed.
	var empty bytes.Buffer
	if _, err := New().Freeze().WriteTo(&empty); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(empty.Bytes(), []byte("sink_cursors")) {
		t.Fatalf("empty snapshot mentions sink cursors: %s", empty.Bytes())
	}
	if err := s.Apply(EndCall(CallRecord{Call: Call{ID: "a"}})); err != nil || s.LastRecordSeq() != 1 {
		t.Fatalf("last record seq %d, %v", s.LastRecordSeq(), err)
	}
}

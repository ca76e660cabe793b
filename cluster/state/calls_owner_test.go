package state

import (
	"errors"
	"testing"
	"time"
)

// TestEndCalls: calls ended on behalf of their owner leave the table and the drop-in index,
// get exactly one record with the reason (even when the command is applied twice or two
// survivors race), and the ended observers learn which.
func TestEndCalls(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	answered := func(id, room, node string, bCallID string) Call {
		return Call{ID: id, Room: room, Node: node, State: CallAnswered, Started: t0, Answered: t0.Add(time.Second),
			A: Leg{CallID: id + "-a", Peer: "198.51.100.7:5060"}, B: Leg{CallID: bCallID, Peer: "192.0.2.1:5060"}}
	}
	tests := []struct {
		name        string
		cmd         Command
		wantEnded   []string // record IDs, in order
		wantLost    string
		wantLeft    []string // calls still active
		wantBusy    map[string]bool
		wantErr     error
		applyTwice  bool
		wantRecords int
	}{
		{name: "lost node: every call it owns", cmd: EndNodeCalls("n2", ReasonNodeLost, "n1", t0.Add(time.Minute)),
			wantEnded: []string{"c2", "c3"}, wantLost: "n2", wantLeft: []string{"c1"},
			wantBusy: map[string]bool{"r1": true, "r2": false}, wantRecords: 2},
		{name: "lost node applied twice: one record per call", cmd: EndNodeCalls("n2", ReasonNodeLost, "n1", t0.Add(time.Minute)),
			applyTwice: true, wantEnded: nil, wantLost: "n2", wantLeft: []string{"c1"}, wantRecords: 2},
		{name: "by id, any owner", cmd: EndCallsByID([]string{"c1", "nope"}, "", ReasonAdmin, "n3", t0.Add(time.Minute)),
			wantEnded: []string{"c1"}, wantLeft: []string{"c2", "c3"},
			wantBusy: map[string]bool{"r1": true, "r2": true}, wantRecords: 1}, // c3 still holds r1
		{name: "by id, owner must match", cmd: EndCallsByID([]string{"c1", "c2"}, "n2", ReasonNodeLost, "n2", t0.Add(time.Minute)),
			wantEnded: []string{"c2"}, wantLeft: []string{"c1", "c3"}, wantRecords: 1},
		{name: "a node with no calls", cmd: EndNodeCalls("n9", ReasonNodeLost, "n1", t0),
			wantLost: "n9", wantLeft: []string{"c1", "c2", "c3"}},
		{name: "selects nothing", cmd: EndCallsByID(nil, "", ReasonAdmin, "n1", t0), wantErr: ErrBadPayload,
			wantLeft: []string{"c1", "c2", "c3"}},
		{name: "no reason", cmd: EndNodeCalls("n2", "", "n1", t0), wantErr: ErrBadPayload,
			wantLeft: []string{"c1", "c2", "c3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			applyAll(t, s, PutCall(answered("c1", "r1", "n1", "b1")), PutCall(answered("c2", "r2", "n2", "b2")),
				PutCall(answered("c3", "r1", "n2", "b3")))
			var seen []Ended
			s.ObserveEnded(func(e Ended) { seen = append(seen, e) })
			if tt.applyTwice {
				applyAll(t, s, tt.cmd)
				seen = nil
			}
			err := s.Apply(tt.cmd)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Apply: %v, want %v", err, tt.wantErr)
			}
			var left []string
			for _, c := range s.Calls() {
				left = append(left, c.ID)
			}
			if !equal(left, tt.wantLeft) {
				t.Fatalf("active calls %v, want %v", left, tt.wantLeft)
			}
			for room, busy := range tt.wantBusy {
				if s.RoomInCall(room, "") != busy {
					t.Fatalf("RoomInCall(%s) = %v, want %v", room, !busy, busy)
				}
			}
			recs := s.Records(RecordQuery{})
			if len(recs) != tt.wantRecords {
				t.Fatalf("%d records, want %d", len(recs), tt.wantRecords)
			}
			for _, r := range recs {
				if r.EndReason != tt.cmd.reason(t) || r.State != CallEnded || r.Status != 200 || r.Duration <= 0 {
					t.Fatalf("record %+v", r)
				}
			}
			if tt.wantErr != nil {
				if len(seen) != 0 {
					t.Fatalf("observer told about a refused command: %+v", seen)
				}
				return
			}
			if len(seen) != 1 || seen[0].Lost != tt.wantLost {
				t.Fatalf("observed %+v, want one with lost %q", seen, tt.wantLost)
			}
			var ended []string
			for _, r := range seen[0].Records {
				ended = append(ended, r.ID)
				if r.B.CallID == "" {
					t.Fatalf("observed record without its B leg: %+v", r)
				}
			}
			if !equal(ended, tt.wantEnded) {
				t.Fatalf("observed ended %v, want %v", ended, tt.wantEnded)
			}
			if r := roundTrip(t, s); r.Hash() != s.Hash() {
				t.Fatal("snapshot differs")
			}
		})
	}
}

func (c Command) reason(t *testing.T) string {
	t.Helper()
	a, err := decode[endCalls](c)
	if err != nil {
		t.Fatal(err)
	}
	return a.Reason
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package state

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// A write retried with the same envelope id is applied once, answers what the first
// application answered, and the memory of it survives a snapshot and a restore.
func TestOnceAppliesEachIDOnce(t *testing.T) {
	s := New()
	at := time.Unix(1e9, 0).UTC()
	rec := CallRecord{Call: Call{ID: "c1", Room: "r", Node: "n1", Started: at}, Ended: at, EndReason: "bye", Status: 200}
	ban := netip.MustParsePrefix("192.0.2.0/24")
	if err := s.Apply(PutBan(Ban{Prefix: ban, Until: at.Add(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		name    string
		cmd     Command
		wantErr error
	}{
		{"call record", EndCall(rec), nil},
		{"audit line", Audit(AuditEntry{Time: at, Who: "t1", Action: "ban", Target: "192.0.2.0/24"}), nil},
		{"lift ban", LiftBan(ban), nil},
		{"delete missing room", DeleteRoom("nope"), ErrNotFound},
	}
	envs := make([][]byte, len(rows))
	for i, r := range rows {
		envs[i] = WrapOnce(OnceID{byte(i + 1)}, r.cmd.Encode())
	}
	apply := func(s *State, round string) {
		t.Helper()
		for i, r := range rows {
			c, err := DecodeCommand(envs[i])
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Apply(c); !errors.Is(err, r.wantErr) || (err == nil) != (r.wantErr == nil) {
				t.Errorf("%s, %s: Apply = %v, want %v", round, r.name, err, r.wantErr)
			}
		}
	}
	apply(s, "first")
	apply(s, "retry")
	check := func(s *State, when string) {
		t.Helper()
		if n := len(s.Records(RecordQuery{Limit: 10})); n != 1 {
			t.Errorf("%s: %d call records, want 1", when, n)
		}
		if n := len(s.AuditLog(0, 10)); n != 1 {
			t.Errorf("%s: %d audit lines, want 1", when, n)
		}
	}
	check(s, "after a retry")
	if d := s.Duplicates(); d != uint64(len(rows)) {
		t.Errorf("%d duplicates skipped, want %d", d, len(rows))
	}
	var buf bytes.Buffer
	if _, err := s.Freeze().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if r.Hash() != s.Hash() {
		t.Fatal("restored state differs")
	}
	apply(r, "retry after restore")
	check(r, "after a retry on a restored state")
}

// The memory is bounded: the oldest ids are forgotten first.
func TestOnceForgetsOldest(t *testing.T) {
	var l onceLog
	for i := range OnceKeep + 10 {
		l.put(OnceID{byte(i), byte(i >> 8), byte(i >> 16)}, onceResult{})
	}
	if len(l.seen) != OnceKeep {
		t.Fatalf("%d ids kept, want %d", len(l.seen), OnceKeep)
	}
	if _, ok := l.get(OnceID{0}); ok {
		t.Fatal("oldest id still remembered")
	}
	last := OnceKeep + 9
	if _, ok := l.get(OnceID{byte(last), byte(last >> 8), byte(last >> 16)}); !ok {
		t.Fatal("newest id forgotten")
	}
	th := l.freeze().thaw()
	if len(th.seen) != OnceKeep || th.ids[0] != l.ids[l.head] {
		t.Fatal("thawed log differs")
	}
}

// A malformed envelope is refused as a bad payload (never a crash, never fatal).
func TestOnceBadEnvelope(t *testing.T) {
	s := New()
	for _, b := range [][]byte{
		{byte(CmdOnce), 1, 1, 2},
		WrapOnce(OnceID{1}, WrapOnce(OnceID{2}, Audit(AuditEntry{}).Encode())),
		WrapOnce(OnceID{3}, EncodeBatch([][]byte{Audit(AuditEntry{}).Encode()})),
	} {
		c, _ := DecodeCommand(b)
		if err := s.Apply(c); !errors.Is(err, ErrBadPayload) || Fatal(err) {
			t.Errorf("Apply(%x) = %v, want a bad payload", b, err)
		}
	}
}

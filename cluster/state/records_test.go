package state

import (
	"runtime"
	"testing"
	"time"
)

// With the record log full (DefaultKeepRecords), each further call record must not copy the
// whole log: at 2,000 calls/s that was ~40 MB copied per EndCall once 100,000 calls had ended.
func TestFullRecordLogAppendIsCheap(t *testing.T) {
	s := New()
	rec := CallRecord{Call: Call{ID: "c", Room: "r", Node: "n1", Started: time.Unix(1e9, 0)}, Ended: time.Unix(1e9, 0), EndReason: "bye", Status: 200}
	for range DefaultKeepRecords {
		if err := s.Apply(EndCall(rec)); err != nil {
			t.Fatal(err)
		}
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const more = 50
	for range more {
		if err := s.Apply(EndCall(rec)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&m1)
	if got := len(s.Records(RecordQuery{Limit: DefaultKeepRecords + more})); got > DefaultKeepRecords {
		t.Fatalf("%d records kept, want at most %d", got, DefaultKeepRecords)
	}
	// One reallocation of the log (~1.25x its size) may fall in the window; 50 copies may not.
	if b := m1.TotalAlloc - m0.TotalAlloc; b > 400<<20 {
		t.Fatalf("%d more EndCalls allocated %d MiB", more, b>>20)
	}
}

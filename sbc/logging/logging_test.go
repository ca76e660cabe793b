package logging

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRateLimitedFloodAndSummary(t *testing.T) {
	var buf bytes.Buffer
	h := RateLimited(slog.NewTextHandler(&buf, nil), 3, 50*time.Millisecond)
	// The window follows the records' own times: a burst of 1,000 within a millisecond, then
	// one 60 ms later (wall-clock sleeps made this test fail on a loaded CI machine).
	t0 := time.Now()
	logAt := func(at time.Time, data string) {
		r := slog.NewRecord(at, slog.LevelError, "failed to parse", 0)
		r.AddAttrs(slog.String("data", data))
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		logAt(t0.Add(time.Duration(i)*time.Microsecond), strings.Repeat("A\r\n", 1000))
	}
	logAt(t0.Add(60*time.Millisecond), "x")
	out := buf.String()
	if n := strings.Count(out, `msg="failed to parse"`); n != 4 {
		t.Fatalf("%d records passed, want 4:\n%s", n, out)
	}
	if !strings.Contains(out, "suppressed=997") {
		t.Fatalf("no summary of suppressed records:\n%s", out)
	}
	if strings.Contains(out, "\r") || len(out) > 4000 {
		t.Fatalf("raw peer data not trimmed (%d bytes)", len(out))
	}
}

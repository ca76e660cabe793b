package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRateLimitedFloodAndSummary(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(RateLimited(slog.NewTextHandler(&buf, nil), 3, 50*time.Millisecond))
	for range 1000 {
		log.Error("failed to parse", "data", strings.Repeat("A\r\n", 1000))
	}
	time.Sleep(60 * time.Millisecond) // the window is wall-clock time by design
	log.Error("failed to parse", "data", "x")
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

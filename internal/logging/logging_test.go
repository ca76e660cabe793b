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

func TestLibraryDemotesPacketContent(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Library(slog.NewTextHandler(&buf, nil))) // Info
	log.Error("failed to parse", "data", "INVITE sip:x SIP/2.0\r\n", "error", "no CRLF")
	log.Info("Unhandled sip response", "msg", "SIP/2.0 200 OK")
	log.Error("Read connection error", "error", "boom") // no packet content: kept at its level
	out := buf.String()
	if strings.Contains(out, "failed to parse") || strings.Contains(out, "Unhandled") {
		t.Fatalf("packet content logged above Debug:\n%s", out)
	}
	if !strings.Contains(out, "level=ERROR msg=\"Read connection error\"") {
		t.Fatalf("an error without packet content was lost:\n%s", out)
	}
	buf.Reset()
	dlog := slog.New(Library(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).With("component", "sip")
	dlog.Error("failed to parse", "data", "x")
	if out := buf.String(); !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "component=sip") {
		t.Fatalf("at Debug the record is kept, demoted, with its attributes:\n%s", out)
	}
}

func TestSwitchFollowsTarget(t *testing.T) {
	var a, b bytes.Buffer
	s := NewSwitch(slog.NewTextHandler(&a, nil))
	log := slog.New(s).With("caller", "x").WithGroup("g")
	log.Info("one", "k", 1)
	s.Set(slog.NewTextHandler(&b, nil))
	log.Info("two", "k", 2)
	if !strings.Contains(a.String(), "msg=one caller=x g.k=1") || strings.Contains(a.String(), "two") {
		t.Fatalf("first target got %q", a.String())
	}
	if !strings.Contains(b.String(), "msg=two caller=x g.k=2") {
		t.Fatalf("second target got %q", b.String())
	}
}

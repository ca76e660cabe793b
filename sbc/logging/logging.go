// Package logging builds the node's slog loggers and guards them against floods: a handler that
// rate-limits records per message and trims values a peer controls (sipgo logs whole raw packets
// on parse errors), so an attacker cannot fill the disk or the terminal through our logs.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// New returns a logger writing text or JSON at level ("debug", "info", "warn", "error").
func New(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h)
}

// maxValue is the longest attribute value kept; longer ones are cut.
const maxValue = 256

// Limiter is a slog.Handler that lets through at most Burst records per message per Interval and
// then one summary record saying how many were suppressed.
type Limiter struct {
	next     slog.Handler
	burst    int
	interval time.Duration
	state    *limiterState
}

type limiterState struct {
	mu   sync.Mutex
	seen map[string]*window
}

type window struct {
	start      time.Time
	n          int
	suppressed int
}

// RateLimited wraps h: at most burst records with the same message per interval pass.
func RateLimited(h slog.Handler, burst int, interval time.Duration) *Limiter {
	return &Limiter{next: h, burst: burst, interval: interval, state: &limiterState{seen: map[string]*window{}}}
}

// Enabled reports whether the wrapped handler handles level.
func (l *Limiter) Enabled(ctx context.Context, level slog.Level) bool {
	return l.next.Enabled(ctx, level)
}

// Handle passes r on unless its message is over budget.
func (l *Limiter) Handle(ctx context.Context, r slog.Record) error {
	s := l.state
	s.mu.Lock()
	w := s.seen[r.Message]
	if w == nil {
		if len(s.seen) > 10_000 { // bounded: a flood of distinct messages resets the table
			s.seen = map[string]*window{}
		}
		w = &window{start: r.Time}
		s.seen[r.Message] = w
	}
	var summary int
	if r.Time.Sub(w.start) >= l.interval {
		summary = w.suppressed
		w.start, w.n, w.suppressed = r.Time, 0, 0
	}
	w.n++
	pass := w.n <= l.burst
	if !pass {
		w.suppressed++
	}
	s.mu.Unlock()
	if summary > 0 {
		sr := slog.NewRecord(r.Time, slog.LevelWarn, fmt.Sprintf("log records suppressed: %q", r.Message), 0)
		sr.AddAttrs(slog.Int("suppressed", summary), slog.Duration("interval", l.interval))
		if err := l.next.Handle(ctx, sr); err != nil {
			return err
		}
	}
	if !pass {
		return nil
	}
	clean := slog.NewRecord(r.Time, r.Level, trim(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		clean.AddAttrs(trimAttr(a))
		return true
	})
	return l.next.Handle(ctx, clean)
}

func trimAttr(a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindString || a.Value.Kind() == slog.KindAny {
		return slog.String(a.Key, trim(a.Value.String()))
	}
	return a
}

func trim(s string) string {
	if len(s) > maxValue {
		s = s[:maxValue] + "…(cut)"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' {
			return '␣'
		}
		return r
	}, s)
}

// WithAttrs returns a Limiter sharing this one's budget.
func (l *Limiter) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *l
	c.next = l.next.WithAttrs(attrs)
	return &c
}

// WithGroup returns a Limiter sharing this one's budget.
func (l *Limiter) WithGroup(name string) slog.Handler {
	c := *l
	c.next = l.next.WithGroup(name)
	return &c
}

// Package logging builds the node's slog loggers and guards them against floods: a handler that
// rate-limits records per message and trims values a peer controls (sipgo logs whole raw packets
// on parse errors), so an attacker cannot fill the disk or the terminal through our logs; a
// handler for libraries that demotes records carrying packet content to Debug (Library); and a
// Switch, to hand a library's process-wide logger (sip.SetDefaultLogger) to the node of the
// moment.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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

// packetAttrs are the attribute keys under which sipgo logs what a peer sent: the raw datagram
// or stream chunk (data), a message's short form (msg) or its start line (req).
var packetAttrs = map[string]bool{"data": true, "msg": true, "req": true}

// Library wraps the handler given to a library that logs what peers send (sipgo): a record that
// carries packet content (an attribute data, msg or req) is demoted to Debug, whatever level the
// library chose (sipgo logs every unparsable packet at Error with its bytes), so packet content
// never reaches the logs at Info or above. Put it in front of a rate-limited handler.
func Library(h slog.Handler) slog.Handler { return library{h} }

type library struct{ next slog.Handler }

func (l library) Enabled(ctx context.Context, level slog.Level) bool {
	// A record may be demoted: ask again in Handle once its attributes are known.
	return l.next.Enabled(ctx, level) || l.next.Enabled(ctx, slog.LevelDebug)
}

func (l library) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug {
		packet := false
		r.Attrs(func(a slog.Attr) bool {
			packet = packetAttrs[a.Key]
			return !packet
		})
		if packet {
			d := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
			r.Attrs(func(a slog.Attr) bool {
				d.AddAttrs(a)
				return true
			})
			r = d
		}
	}
	if !l.next.Enabled(ctx, r.Level) {
		return nil
	}
	return l.next.Handle(ctx, r)
}

func (l library) WithAttrs(attrs []slog.Attr) slog.Handler { return library{l.next.WithAttrs(attrs)} }
func (l library) WithGroup(name string) slog.Handler       { return library{l.next.WithGroup(name)} }

// Switch is a handler that forwards to another one, which can be replaced at any time without
// a data race: the way to give a process-wide logger of a library (sip.SetDefaultLogger, set once
// before anything reads it) to the node that runs now.
type Switch struct {
	target atomic.Pointer[slog.Handler]
}

// NewSwitch returns a Switch forwarding to h.
func NewSwitch(h slog.Handler) *Switch {
	s := &Switch{}
	s.Set(h)
	return s
}

// Set makes the Switch forward to h.
func (s *Switch) Set(h slog.Handler) { s.target.Store(&h) }

// Enabled reports whether the current target handles level.
func (s *Switch) Enabled(ctx context.Context, level slog.Level) bool {
	return (*s.target.Load()).Enabled(ctx, level)
}

// Handle passes r to the current target.
func (s *Switch) Handle(ctx context.Context, r slog.Record) error {
	return (*s.target.Load()).Handle(ctx, r)
}

// WithAttrs returns a handler that adds attrs and forwards to the Switch's target of the moment.
func (s *Switch) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &switchChild{s: s, apply: func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) }}
}

// WithGroup returns a handler that opens a group and forwards to the Switch's target of the
// moment.
func (s *Switch) WithGroup(name string) slog.Handler {
	return &switchChild{s: s, apply: func(h slog.Handler) slog.Handler { return h.WithGroup(name) }}
}

// switchChild is a Switch with attributes or groups applied to whatever its target is.
type switchChild struct {
	s     *Switch
	apply func(slog.Handler) slog.Handler
}

func (c *switchChild) cur() slog.Handler { return c.apply(*c.s.target.Load()) }

func (c *switchChild) Enabled(ctx context.Context, level slog.Level) bool {
	return (*c.s.target.Load()).Enabled(ctx, level)
}
func (c *switchChild) Handle(ctx context.Context, r slog.Record) error { return c.cur().Handle(ctx, r) }
func (c *switchChild) WithAttrs(attrs []slog.Attr) slog.Handler {
	prev := c.apply
	return &switchChild{s: c.s, apply: func(h slog.Handler) slog.Handler { return prev(h).WithAttrs(attrs) }}
}
func (c *switchChild) WithGroup(name string) slog.Handler {
	prev := c.apply
	return &switchChild{s: c.s, apply: func(h slog.Handler) slog.Handler { return prev(h).WithGroup(name) }}
}

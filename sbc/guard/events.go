package guard

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// EventFilter selects events for Recent. Zero fields match everything.
type EventFilter struct {
	Rule   string       // exact rule name
	Source netip.Prefix // events whose source address is inside (an IP is a /32 or /128)
	Room   string       // exact room name
	Since  time.Time    // events at or after
}

func (f *EventFilter) match(e *ringEntry) bool {
	switch {
	case f.Rule != "" && e.ev.Rule != f.Rule:
		return false
	case f.Room != "" && e.ev.Room != f.Room:
		return false
	case !f.Since.IsZero() && e.ev.Time.Before(f.Since):
		return false
	case f.Source.IsValid() && !f.Source.Contains(e.src):
		return false
	}
	return true
}

type ringEntry struct {
	ev  Event
	src netip.Addr
}

// eventLog is the bounded ring of recent refusals plus the live subscribers.
type eventLog struct {
	mu   sync.Mutex
	buf  []ringEntry
	next int
	full bool

	subMu   sync.RWMutex
	subs    map[chan Event]struct{}
	dropped atomic.Uint64 // events a slow subscriber missed

	counts [numRules]atomic.Uint64
}

func newEventLog(size int) *eventLog {
	return &eventLog{buf: make([]ringEntry, size), subs: map[chan Event]struct{}{}}
}

func (l *eventLog) add(ev Event, src netip.Addr, rule ruleID) {
	l.counts[rule].Add(1)
	l.mu.Lock()
	l.buf[l.next] = ringEntry{ev: ev, src: src}
	l.next++
	if l.next == len(l.buf) {
		l.next, l.full = 0, true
	}
	l.mu.Unlock()
	l.subMu.RLock()
	for ch := range l.subs {
		select {
		case ch <- ev:
		default:
			l.dropped.Add(1)
		}
	}
	l.subMu.RUnlock()
}

// Recent returns up to limit refusals matching f, newest first. limit <= 0 means all the ring
// holds (Config.Events).
func (g *Guard) Recent(f EventFilter, limit int) []Event {
	l := g.events
	if f.Source.IsValid() {
		f.Source = normPrefix(f.Source)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.next
	if l.full {
		n = len(l.buf)
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	out := make([]Event, 0, min(limit, 256))
	for i := 0; i < n && len(out) < limit; i++ {
		e := &l.buf[(l.next-1-i+len(l.buf))%len(l.buf)]
		if f.match(e) {
			out = append(out, e.ev)
		}
	}
	return out
}

func normPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// Subscribe returns a channel of refusals as they happen, closed when ctx is done. Delivery never
// blocks the guard: when the reader falls behind (64 events), further events are dropped for it.
func (g *Guard) Subscribe(ctx context.Context) <-chan Event {
	l := g.events
	ch := make(chan Event, 64)
	l.subMu.Lock()
	l.subs[ch] = struct{}{}
	l.subMu.Unlock()
	go func() {
		<-ctx.Done()
		l.subMu.Lock()
		delete(l.subs, ch)
		l.subMu.Unlock()
		close(ch)
	}()
	return ch
}

// Counts returns refusals per rule since the guard started, with every rule present.
func (g *Guard) Counts() map[string]uint64 {
	out := make(map[string]uint64, numRules)
	for i := range numRules {
		out[ruleNames[i]] = g.events.counts[i].Load()
	}
	return out
}

// logLimiter lets the first log of each (source, rule) through per minute. It forgets
// everything at each minute boundary and holds at most logKeys keys, so a spoofed flood cannot
// grow it; what it suppressed is summed up in the next window's first log.
type logLimiter struct {
	mu         sync.Mutex
	minute     int64
	seen       map[logKey]struct{}
	suppressed int
}

type logKey struct {
	src  netip.Addr
	rule ruleID
}

const logKeys = 4096

// allow reports whether to log and how many logs were suppressed in the previous minute
// (reported once).
func (l *logLimiter) allow(src netip.Addr, rule ruleID, now int64) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := now / int64(time.Minute)
	prev := 0
	if m != l.minute || l.seen == nil {
		prev = l.suppressed
		l.minute, l.suppressed = m, 0
		l.seen = make(map[logKey]struct{}, 64)
	}
	k := logKey{src, rule}
	if _, ok := l.seen[k]; ok || len(l.seen) >= logKeys {
		l.suppressed++
		return false, 0
	}
	l.seen[k] = struct{}{}
	return true, prev
}

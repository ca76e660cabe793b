package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// Event stream and summary settings.
const (
	streamHeartbeat = 15 * time.Second
	defaultEvents   = 100
	maxEvents       = 10000
	maxHours        = 24 * 7
	summaryScan     = 100000 // most events a summary reads
)

// EventSummary is what the dashboard charts: refusals per hour by rule and the top sources.
type EventSummary struct {
	// From is the start of the first hourly bucket; Hours the number of buckets.
	From  time.Time `json:"from"`
	Hours int       `json:"hours"`
	// Total is the number of refusals in the window.
	Total int `json:"total"`
	// Rules are the rules seen in the window, most frequent first.
	Rules []string `json:"rules"`
	// Hourly holds one bucket per hour, oldest first.
	Hourly []HourBucket `json:"hourly"`
	// TopSources are the addresses refused most often in the window.
	TopSources []SourceCount `json:"top_sources"`
	// Counts are refusals per rule since the guard started (all rules, zeros included).
	Counts map[string]uint64 `json:"counts"`
}

// HourBucket counts refusals per rule in one hour.
type HourBucket struct {
	Hour   time.Time      `json:"hour"`
	Counts map[string]int `json:"counts"`
}

// SourceCount is one refused source address.
type SourceCount struct {
	Source   string    `json:"source"`
	Count    int       `json:"count"`
	LastRule string    `json:"last_rule"`
	Last     time.Time `json:"last"`
}

func (s *Server) eventFilter(r *http.Request, withSince bool) (guard.EventFilter, error) {
	q := r.URL.Query()
	f := guard.EventFilter{Rule: q.Get("rule"), Room: q.Get("room")}
	if v := q.Get("source"); v != "" {
		p, ok := parsePrefix(v)
		if !ok {
			return f, invalid("source", "%q is not an IP address or CIDR prefix", trimForLog(v))
		}
		f.Source = p
	}
	if withSince {
		t, err := qTime(r, "since", s.now())
		if err != nil {
			return f, err
		}
		f.Since = t
	}
	return f, nil
}

// matchEvent applies f to one event as the guard does.
func matchEvent(f *guard.EventFilter, e *guard.Event) bool {
	switch {
	case f.Rule != "" && e.Rule != f.Rule, f.Room != "" && e.Room != f.Room,
		!f.Since.IsZero() && e.Time.Before(f.Since):
		return false
	case f.Source.IsValid():
		a, ok := eventAddr(e.Source)
		return ok && f.Source.Contains(a)
	}
	return true
}

// eventAddr is the address of an event's "ip:port" (or bare IP) source.
func eventAddr(src string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(src); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(src); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, _ Principal) error {
	f, err := s.eventFilter(r, true)
	if err != nil {
		return err
	}
	limit, err := qInt(r, "limit", defaultEvents, 1, maxEvents)
	if err != nil {
		return err
	}
	var out []guard.Event
	if s.deps.Events != nil {
		out = s.deps.Events.Recent(f, limit)
	}
	writeJSON(w, http.StatusOK, listOf(out))
	return nil
}

func (s *Server) eventSummary(w http.ResponseWriter, r *http.Request, _ Principal) error {
	hours, err := qInt(r, "hours", 24, 1, maxHours)
	if err != nil {
		return err
	}
	top, err := qInt(r, "top", 10, 1, 100)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	from := now.Truncate(time.Hour).Add(-time.Duration(hours-1) * time.Hour)
	sum := EventSummary{From: from, Hours: hours, Rules: []string{}, TopSources: []SourceCount{},
		Hourly: make([]HourBucket, hours), Counts: map[string]uint64{}}
	for i := range sum.Hourly {
		sum.Hourly[i] = HourBucket{Hour: from.Add(time.Duration(i) * time.Hour), Counts: map[string]int{}}
	}
	if s.deps.Events != nil {
		sum.Counts = s.deps.Events.Counts()
		ruleTotals := map[string]int{}
		sources := map[string]*SourceCount{}
		for _, e := range s.deps.Events.Recent(guard.EventFilter{Since: from}, summaryScan) {
			i := int(e.Time.Sub(from) / time.Hour)
			if i < 0 || i >= hours {
				continue
			}
			sum.Total++
			sum.Hourly[i].Counts[e.Rule]++
			ruleTotals[e.Rule]++
			key := e.Source
			if a, ok := eventAddr(e.Source); ok {
				key = a.String()
			}
			sc := sources[key]
			if sc == nil {
				sc = &SourceCount{Source: key}
				sources[key] = sc
			}
			sc.Count++
			if e.Time.After(sc.Last) || sc.Last.IsZero() {
				sc.Last, sc.LastRule = e.Time, e.Rule
			}
		}
		for rule := range ruleTotals {
			sum.Rules = append(sum.Rules, rule)
		}
		slices.SortFunc(sum.Rules, func(a, b string) int {
			return cmp.Or(cmp.Compare(ruleTotals[b], ruleTotals[a]), cmp.Compare(a, b))
		})
		for _, sc := range sources {
			sum.TopSources = append(sum.TopSources, *sc)
		}
		slices.SortFunc(sum.TopSources, func(a, b SourceCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Source, b.Source))
		})
		if len(sum.TopSources) > top {
			sum.TopSources = sum.TopSources[:top]
		}
	}
	writeJSON(w, http.StatusOK, sum)
	return nil
}

// streamEvents sends refusals as Server-Sent Events ("event: refusal", JSON data) until the
// client goes away or the server closes, with a comment line every 15s to keep proxies from
// timing out. Browsers read it with fetch (EventSource cannot send the Authorization header).
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, _ Principal) error {
	f, err := s.eventFilter(r, false)
	if err != nil {
		return err
	}
	if s.deps.Events == nil {
		return apiErr(http.StatusServiceUnavailable, CodeUnavailable, "the guard's events are not available on this node")
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.base, cancel)
	defer stop()
	ch := s.deps.Events.Subscribe(ctx)

	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 3000\n: connected\n\n"); err != nil {
		return nil
	}
	_ = rc.Flush()
	tick := time.NewTicker(streamHeartbeat)
	defer tick.Stop()
	var id uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
		case e, ok := <-ch:
			if !ok {
				return nil
			}
			if !matchEvent(&f, &e) {
				continue
			}
			b, err := json.Marshal(e)
			if err != nil {
				continue
			}
			id++
			if _, err := fmt.Fprintf(w, "id: %d\nevent: refusal\ndata: %s\n\n", id, b); err != nil {
				return nil
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"go4.org/netipx"
)

// Bounds of a threat feed.
const (
	// MaxFeedBytes is the largest feed accepted.
	MaxFeedBytes = 64 << 20
	// Feed entries broader than these are refused: a feed listing 0.0.0.0/0 must not lock
	// everybody out.
	minFeedBits4 = 8
	minFeedBits6 = 16
)

// ParseFeed parses a threat feed: a JSON array (first non-space byte '[') of strings or of
// objects with an "ip" (or "cidr", "prefix") string, or plain text with one entry per line,
// where '#' and ';' start comments and only the first field (up to white space or ',') counts.
// An entry is an IP, a CIDR or a range "a-b". bad counts entries that are none of these or are
// broader than /8 (IPv4) or /16 (IPv6); they are left out. err (wrapping ErrFeed) means the
// feed is unusable: not JSON when it looks like it, or bad entries and no good ones (an HTML
// error page, say). An empty feed is valid and lists nothing.
func ParseFeed(data []byte) (prefixes []netip.Prefix, bad int, err error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	t := bytes.TrimSpace(data)
	var firstBad string
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s == "" {
			return
		}
		ps, ok := parseFeedEntry(s)
		if !ok {
			if bad == 0 {
				firstBad = s
			}
			bad++
			return
		}
		prefixes = append(prefixes, ps...)
	}
	if len(t) > 0 && (t[0] == '[' || t[0] == '{') {
		var elems []json.RawMessage
		if err := json.Unmarshal(t, &elems); err != nil {
			return nil, 0, fmt.Errorf("%w: JSON: want an array of strings or {\"ip\": ...} objects: %v", ErrFeed, err)
		}
		for _, e := range elems {
			var s string
			if json.Unmarshal(e, &s) == nil {
				add(s)
				continue
			}
			var o struct {
				IP     string `json:"ip"`
				CIDR   string `json:"cidr"`
				Prefix string `json:"prefix"`
			}
			if json.Unmarshal(e, &o) == nil && o.IP+o.CIDR+o.Prefix != "" {
				add(o.IP + o.CIDR + o.Prefix)
				continue
			}
			if bad == 0 {
				firstBad = string(e)
				if len(firstBad) > 64 {
					firstBad = firstBad[:64]
				}
			}
			bad++
		}
	} else {
		for len(data) > 0 {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			if i := bytes.IndexAny(line, "#;"); i >= 0 {
				line = line[:i]
			}
			line = bytes.TrimSpace(line)
			if i := bytes.IndexAny(line, " \t,"); i >= 0 {
				line = line[:i]
			}
			add(string(line))
		}
	}
	if len(prefixes) == 0 && bad > 0 {
		if len(firstBad) > 64 {
			firstBad = firstBad[:64]
		}
		return nil, bad, fmt.Errorf("%w: no valid entries (%d bad, first %q)", ErrFeed, bad, firstBad)
	}
	return prefixes, bad, nil
}

// parseFeedEntry parses an IP, CIDR or range; ok is false for anything else or too broad.
func parseFeedEntry(s string) ([]netip.Prefix, bool) {
	var ps []netip.Prefix
	switch {
	case strings.IndexByte(s, '/') >= 0:
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, false
		}
		ps = []netip.Prefix{normPrefix(p)}
	case strings.IndexByte(s, '-') >= 0:
		r, err := netipx.ParseIPRange(s)
		if err != nil {
			return nil, false
		}
		ps = r.Prefixes()
	default:
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
		if err != nil || a.Zone() != "" {
			return nil, false
		}
		a = a.Unmap()
		ps = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
	}
	for i, p := range ps {
		p = normPrefix(p)
		if (p.Addr().Is4() && p.Bits() < minFeedBits4) || (p.Addr().Is6() && p.Bits() < minFeedBits6) {
			return nil, false
		}
		ps[i] = p
	}
	return ps, len(ps) > 0
}

// fetchFeed reads a feed's bytes from a file or an http(s) URL.
func (g *Guard) fetchFeed(ctx context.Context, f Feed) ([]byte, error) {
	var rd io.Reader
	switch u := f.URL; {
	case strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://"):
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "text/plain, application/json;q=0.9, */*;q=0.5")
		resp, err := g.cfg.FeedClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP status %s", resp.Status)
		}
		rd = resp.Body
	default:
		path := u
		if strings.HasPrefix(u, "file://") {
			pu, err := url.Parse(u)
			if err != nil {
				return nil, err
			}
			path = pu.Path
		}
		fh, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		rd = fh
	}
	b, err := io.ReadAll(io.LimitReader(rd, MaxFeedBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFeedBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxFeedBytes)
	}
	return b, nil
}

// loadFeed fetches and parses feed i and, when it is usable, swaps it into the union.
func (g *Guard) loadFeed(ctx context.Context, i int, f Feed) error {
	b, err := g.fetchFeed(ctx, f)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrFeed, f.URL, err)
	}
	ps, bad, err := ParseFeed(b)
	if err != nil {
		return fmt.Errorf("feed %s: %w", f.URL, err)
	}
	if bad > 0 {
		g.log.Warn("guard: feed has bad entries; they are ignored", "feed", f.URL, "bad", bad, "good", len(ps))
	}
	g.setFeed(i, ps)
	g.log.Info("guard: feed loaded", "feed", f.URL, "entries", len(ps))
	return nil
}

// setFeed replaces feed i's prefixes and rebuilds the union.
func (g *Guard) setFeed(i int, ps []netip.Prefix) {
	g.feedMu.Lock()
	g.feedLists[i] = ps
	var b netipx.IPSetBuilder
	for _, l := range g.feedLists {
		for _, p := range l {
			b.AddPrefix(p)
		}
	}
	set, err := b.IPSet()
	if err == nil {
		g.feeds.Store(set)
	}
	g.feedMu.Unlock()
	if err != nil {
		g.log.Error("guard: cannot build feed set", "error", err)
		return
	}
	if g.cfg.OnFeedsChanged != nil {
		g.cfg.OnFeedsChanged()
	}
}

// haveFeeds reports whether any feed has been loaded.
func (g *Guard) haveFeeds() bool {
	g.feedMu.Lock()
	defer g.feedMu.Unlock()
	return len(g.feedLists) > 0
}

// runFeed loads a feed now and every Interval until ctx is done. A failing load keeps the last
// good list.
func (g *Guard) runFeed(ctx context.Context, i int, f Feed) {
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		if err := g.loadFeed(ctx, i, f); err != nil && ctx.Err() == nil {
			g.log.Warn("guard: feed not loaded; keeping the last good list", "feed", f.URL, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// FeedPrefixes returns the union of the threat feeds as loaded now, minus allow-listed sources
// and our node addresses: what may be dropped before parsing. Call it again after
// Config.OnFeedsChanged.
func (g *Guard) FeedPrefixes() []netip.Prefix {
	set := g.feeds.Load()
	if len(set.Prefixes()) == 0 {
		return nil
	}
	var b netipx.IPSetBuilder
	b.AddSet(set)
	if allow := g.lists.Load().allow; allow != nil && allow.ips != nil {
		b.RemoveSet(allow.ips)
	}
	for _, a := range g.cfg.NodeAddrs {
		b.Remove(a)
	}
	out, err := b.IPSet()
	if err != nil {
		return set.Prefixes()
	}
	return out.Prefixes()
}

package guard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

func TestParseFeed(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		bad  int
		err  bool
	}{
		{name: "text", in: "# header\n198.51.100.7\n203.0.113.0/24 ; SBL123\r\n\n2001:db8::/32 # comment\n", want: []string{"198.51.100.7/32", "203.0.113.0/24", "2001:db8::/32"}},
		{name: "fields and CSV", in: "198.51.100.7\t12\n198.51.100.8,seen 3 times\n", want: []string{"198.51.100.7/32", "198.51.100.8/32"}},
		{name: "range", in: "198.51.100.0-198.51.100.3\n", want: []string{"198.51.100.0/30"}},
		{name: "mapped and host bits", in: "::ffff:198.51.100.9\n203.0.113.77/24\n", want: []string{"198.51.100.9/32", "203.0.113.0/24"}},
		{name: "bad lines are counted", in: "198.51.100.7\nnot-an-ip\n0.0.0.0/0\n::/0\n", want: []string{"198.51.100.7/32"}, bad: 3},
		{name: "BOM", in: "\xef\xbb\xbf198.51.100.7\n", want: []string{"198.51.100.7/32"}},
		{name: "empty", in: "# nothing today\n", want: nil},
		{name: "html error page", in: "<html><body>502 Bad Gateway</body></html>\n", bad: 1, err: true},
		{name: "json strings", in: `["198.51.100.7", "203.0.113.0/24"]`, want: []string{"198.51.100.7/32", "203.0.113.0/24"}},
		{name: "json objects", in: ` [{"ip": "198.51.100.7", "score": 9}, {"cidr": "2001:db8::/48"}, {"prefix": "203.0.113.0/25"}]`,
			want: []string{"198.51.100.7/32", "2001:db8::/48", "203.0.113.0/25"}},
		{name: "json mixed with bad", in: `["198.51.100.7", 42, {"name": "x"}, "nope"]`, want: []string{"198.51.100.7/32"}, bad: 3},
		{name: "json broken", in: `["198.51.100.7",`, err: true},
		{name: "json object", in: `{"ips": ["198.51.100.7"]}`, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, bad, err := ParseFeed([]byte(tt.in))
			if (err != nil) != tt.err || (err != nil && !errors.Is(err, ErrFeed)) {
				t.Fatalf("err = %v", err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) || bad != tt.bad {
				t.Fatalf("got %v bad %d, want %v bad %d", got, bad, tt.want, tt.bad)
			}
		})
	}
}

// feedServer serves a feed body that the test can change, or fail.
type feedServer struct {
	mu     sync.Mutex
	body   string
	status int
	hits   atomic.Int32
}

func (s *feedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != 0 {
		http.Error(w, "nope", s.status)
		return
	}
	_, _ = w.Write([]byte(s.body))
}

func (s *feedServer) set(body string, status int) {
	s.mu.Lock()
	s.body, s.status = body, status
	s.mu.Unlock()
}

func startFeedServer(t *testing.T, fs *feedServer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(fs)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestFeedsFromFileAndHTTP(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "drop.txt")
	if err := os.WriteFile(file, []byte("# DROP\n203.0.113.0/24 ; SBL1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := &feedServer{body: `[{"ip": "198.51.100.66"}, "2001:db8:bad::/48"]`}
	url := startFeedServer(t, fs)
	changed := make(chan struct{}, 16)
	g, _, _ := newTestGuard(t, func(c *Config) {
		c.Feeds = []Feed{{URL: file, Interval: time.Hour}, {URL: url + "/feed.json", Interval: 20 * time.Millisecond}}
		c.Allow = []string{"198.51.100.66"} // allow-listed sources are never dropped early
		c.OnFeedsChanged = func() { changed <- struct{}{} }
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	prefixes := func() []string {
		var out []string
		for _, p := range g.FeedPrefixes() {
			out = append(out, p.String())
		}
		return out
	}
	testutil.Eventually(t, "both feeds", func() bool { return len(prefixes()) == 2 })
	if got := prefixes(); !slices.Equal(got, []string{"203.0.113.0/24", "2001:db8:bad::/48"}) {
		t.Fatalf("FeedPrefixes = %v", got)
	}
	if v := g.Check(invite("203.0.113.4:5060")); v.Rule != RuleThreatFeed {
		t.Fatalf("file feed: %+v", v)
	}
	if v := g.Check(invite("[2001:db8:bad::1]:5060")); v.Rule != RuleThreatFeed {
		t.Fatalf("http feed: %+v", v)
	}
	if v := g.Check(invite("198.51.100.66:5060")); !v.Allowed() {
		t.Fatalf("allow-listed source in a feed: %+v", v)
	}
	if g.Run(ctx) != ErrRunning {
		t.Fatal("second Run")
	}
	// The server fails: the last good list stays.
	fs.set("", http.StatusInternalServerError)
	h := fs.hits.Load()
	testutil.Eventually(t, "failed reloads", func() bool { return fs.hits.Load() >= h+3 })
	if v := g.Check(invite("[2001:db8:bad::1]:5060")); v.Rule != RuleThreatFeed {
		t.Fatalf("after failures: %+v", v)
	}
	// A garbage body also keeps the last good list.
	fs.set("<html>oops</html>", 0)
	h = fs.hits.Load()
	testutil.Eventually(t, "garbage reloads", func() bool { return fs.hits.Load() >= h+3 })
	if v := g.Check(invite("[2001:db8:bad::1]:5060")); v.Rule != RuleThreatFeed {
		t.Fatalf("after garbage: %+v", v)
	}
	// A new list is swapped in.
	fs.set("198.51.100.200\n", 0)
	testutil.Eventually(t, "new list", func() bool { return slices.Contains(prefixes(), "198.51.100.200/32") })
	if v := g.Check(invite("[2001:db8:bad::1]:5060")); !v.Allowed() {
		t.Fatalf("removed from the feed: %+v", v)
	}
	if v := g.Check(invite("198.51.100.200:5060")); v.Rule != RuleThreatFeed {
		t.Fatalf("added to the feed: %+v", v)
	}
	select {
	case <-changed:
	default:
		t.Fatal("OnFeedsChanged not called")
	}
}

func TestFeedErrors(t *testing.T) {
	g, _, _ := newTestGuard(t, nil)
	fs := &feedServer{status: http.StatusNotFound}
	url := startFeedServer(t, fs)
	for _, f := range []Feed{{URL: filepath.Join(t.TempDir(), "missing.txt")}, {URL: url}, {URL: "file:///nonexistent/feed"}} {
		if err := g.loadFeed(context.Background(), 0, f); !errors.Is(err, ErrFeed) {
			t.Errorf("%s: err = %v", f.URL, err)
		}
	}
	if n := len(g.FeedPrefixes()); n != 0 {
		t.Fatalf("%d prefixes", n)
	}
}

func TestNewValidates(t *testing.T) {
	st := state.NewLocal()
	if _, err := New(Config{Domain: "x"}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil store: err = %v", err)
	}
	for name, cfg := range map[string]Config{
		"no domain":   {},
		"bad allow":   {Domain: "x", Allow: []string{"10.0.0.0/99"}},
		"bad deny":    {Domain: "x", Deny: []string{"a b"}},
		"bad scanner": {Domain: "x", ScannerUserAgents: []string{""}},
		"ban max":     {Domain: "x", BanTime: time.Hour, BanMax: time.Minute},
		"feed url":    {Domain: "x", Feeds: []Feed{{}}},
	} {
		if _, err := New(cfg, st); !errors.Is(err, ErrConfig) && !errors.Is(err, ErrPattern) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

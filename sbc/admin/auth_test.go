package admin

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

func TestAuthEveryRoute(t *testing.T) {
	e := newEnv(t)
	for _, rt := range e.srv.routes {
		path := strings.NewReplacer("{name}", "boardroom", "{id}", "x", "{prefix...}", "192.0.2.1").Replace(rt.pattern)
		t.Run(rt.method+" "+rt.pattern, func(t *testing.T) {
			if rt.scope == "" {
				wantStatus(t, e.do(rt.method, path, "", nil), http.StatusOK)
				return
			}
			r := e.do(rt.method, path, "", nil)
			wantErr(t, r, http.StatusUnauthorized, CodeUnauthorized, "")
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
			wantErr(t, e.do(rt.method, path, "pct_wrong", nil), http.StatusUnauthorized, CodeUnauthorized, "")
			if rt.scope == state.ScopeAdmin {
				wantErr(t, e.do(rt.method, path, e.read, `{}`), http.StatusForbidden, CodeForbidden, "")
			}
		})
	}
}

func TestAuthSchemes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"bearer", "Bearer " + e.read, http.StatusOK},
		{"lowercase scheme", "bearer " + e.read, http.StatusOK},
		{"basic", "Basic " + e.read, http.StatusUnauthorized},
		{"no secret", "Bearer ", http.StatusUnauthorized},
		{"secret with suffix", "Bearer " + e.read + "x", http.StatusUnauthorized},
		{"secret prefix", "Bearer " + e.read[:len(e.read)-1], http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.http.URL+"/api/v1/rooms", nil)
			req.Header.Set("Authorization", tc.header)
			res, err := e.http.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
}

func TestRevokedTokenRefused(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/tokens", e.admin, map[string]any{"scope": "read", "name": "short-lived"})
	wantStatus(t, r, http.StatusCreated)
	var tc TokenCreated
	r.json(t, &tc)
	wantStatus(t, e.do("GET", "/api/v1/rooms", tc.Secret, nil), http.StatusOK)
	wantStatus(t, e.do("DELETE", "/api/v1/tokens/"+tc.ID, e.admin, nil), http.StatusNoContent)
	wantErr(t, e.do("GET", "/api/v1/rooms", tc.Secret, nil), http.StatusUnauthorized, CodeUnauthorized, "")
}

func TestConfigToken(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.Token = "from-the-config-file" }))
	r := e.do("POST", "/api/v1/guard/bans", "from-the-config-file", map[string]any{"prefix": "192.0.2.9"})
	wantStatus(t, r, http.StatusCreated)
	if len(e.store.State().Tokens()) != 2 {
		t.Fatal("the config token must not be written to the state")
	}
	a := e.store.State().AuditLog(0, 0)
	if len(a) != 1 || a[0].Who != "token:config (config)" || a[0].Action != "ban.add" {
		t.Fatalf("audit %+v", a)
	}
}

func TestFailedAuthRateLimitedAndLogged(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e := newEnv(t, withConfig(func(c *Config) {
		c.AuthFailureBurst, c.AuthFailureEvery, c.Logger = 3, time.Minute, log
	}))
	for range 3 {
		wantErr(t, e.do("GET", "/api/v1/rooms", "pct_guess", nil), http.StatusUnauthorized, CodeUnauthorized, "")
	}
	// The budget of that token from this source is spent: it is refused until it refills.
	r := e.do("GET", "/api/v1/rooms", "pct_guess", nil)
	wantErr(t, r, http.StatusTooManyRequests, CodeRateLimited, "")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	wantStatus(t, e.do("GET", "/api/v1/rooms", e.read, nil), http.StatusOK) // another token: not locked out
	e.now = e.now.Add(time.Minute)
	wantStatus(t, e.do("GET", "/api/v1/rooms", e.read, nil), http.StatusOK)
	out := logs.String()
	if !strings.Contains(out, "admin authentication failed") || !strings.Contains(out, "remote=127.0.0.1") {
		t.Fatalf("failure not logged:\n%s", out)
	}
	if strings.Count(out, "admin authentication failed") != 1 {
		t.Fatalf("failures of one source must be logged at most once per interval:\n%s", out)
	}
	if strings.Contains(out, "pct_guess") || strings.Contains(out, e.read) {
		t.Fatalf("a secret reached the log:\n%s", out)
	}
}

func TestFailLimiterPerSource(t *testing.T) {
	l := newFailLimiter(2, time.Second)
	now := time.Unix(1000, 0)
	tok, other := sha256.Sum256([]byte("pct_guess")), sha256.Sum256([]byte("pct_valid"))
	a, b := mustAddr("192.0.2.1"), mustAddr("192.0.2.2")
	v6a, v6b := mustAddr("2001:db8:1:2::1"), mustAddr("2001:db8:1:2:ffff::9")
	l.fail(a, tok, now)
	l.fail(a, tok, now)
	if !l.blocked(a, tok, now) || l.blocked(b, tok, now) {
		t.Fatal("budget must be per source")
	}
	if l.blocked(a, other, now) {
		t.Fatal("budget must be per token: another token from the same source is not locked out")
	}
	if l.blocked(a, tok, now.Add(time.Second)) {
		t.Fatal("a refilled failure must unblock")
	}
	l.fail(v6a, tok, now)
	l.fail(v6b, tok, now)
	if !l.blocked(v6a, tok, now) {
		t.Fatal("IPv6 sources of one /64 share a budget")
	}
	for i := range maxFailSources + 10 {
		l.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), tok, now.Add(time.Duration(i)))
		l.fail(a, sha256.Sum256([]byte{byte(i), byte(i >> 8)}), now.Add(time.Duration(i)))
	}
	if len(l.m) > maxFailSources || len(l.logged) > maxFailSources {
		t.Fatalf("limiter grew to %d buckets, %d logged sources", len(l.m), len(l.logged))
	}
}

// TestWrongTokenFloodKeepsValidToken (issue 14 item 11): a flood of wrong tokens from an
// address locks those tokens out, not a valid token used from the same address; the failures
// are logged once per source per interval, whatever the tokens.
func TestWrongTokenFloodKeepsValidToken(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e := newEnv(t, withConfig(func(c *Config) {
		c.AuthFailureBurst, c.AuthFailureEvery, c.Logger = 3, time.Minute, log
	}))
	for i := range 50 {
		guess := "pct_guess"
		if i%2 == 1 {
			guess = fmt.Sprintf("pct_guess%d", i)
		}
		r := e.do("GET", "/api/v1/rooms", guess, nil)
		if r.status != http.StatusUnauthorized && r.status != http.StatusTooManyRequests {
			t.Fatalf("wrong token %d: %d", i, r.status)
		}
	}
	wantErr(t, e.do("GET", "/api/v1/rooms", "pct_guess", nil), http.StatusTooManyRequests, CodeRateLimited, "")
	wantStatus(t, e.do("GET", "/api/v1/rooms", e.read, nil), http.StatusOK)
	if n := strings.Count(logs.String(), "admin authentication failed"); n != 1 {
		t.Fatalf("%d failure logs for one source within the interval, want 1:\n%s", n, logs.String())
	}
}

func TestHostAndOriginCheck(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.AllowedHosts = []string{"sbc.example.com"} }))
	for _, tc := range []struct {
		name, host, origin string
		want               int
	}{
		{"loopback ip", "127.0.0.1:8443", "", http.StatusOK},
		{"localhost", "localhost:8443", "", http.StatusOK},
		{"ipv6 loopback", "[::1]:8443", "", http.StatusOK},
		{"allowed name", "sbc.example.com", "https://sbc.example.com", http.StatusOK},
		{"same origin", "127.0.0.1:8443", "http://127.0.0.1:8443", http.StatusOK},
		{"rebound name", "evil.example:8443", "", http.StatusForbidden},
		{"rebound origin", "127.0.0.1:8443", "http://evil.example", http.StatusForbidden},
		{"null origin", "127.0.0.1:8443", "null", http.StatusForbidden},
		{"lan ip", "192.168.1.10:8443", "", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/rooms", "/metrics", "/dashboard/", "/healthz"} {
				req := httptest.NewRequest("GET", path, nil)
				req.Host = tc.host
				req.RemoteAddr = "127.0.0.1:5555"
				req.Header.Set("Authorization", "Bearer "+e.read)
				if tc.origin != "" {
					req.Header.Set("Origin", tc.origin)
				}
				rec := httptest.NewRecorder()
				e.srv.Handler().ServeHTTP(rec, req)
				if rec.Code != tc.want {
					t.Fatalf("%s: status %d, want %d: %s", path, rec.Code, tc.want, rec.Body)
				}
				if tc.want == http.StatusForbidden && !strings.Contains(rec.Body.String(), `"bad_host"`) {
					t.Fatalf("%s: body %s", path, rec.Body)
				}
			}
		})
	}
}

func TestHostCheckOffOnPublicTLSListener(t *testing.T) {
	srv, err := New(Config{Listen: "0.0.0.0:8443"}, Deps{Store: state.NewLocal(), Domain: testDomain})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Host = "sbc.example.net"
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

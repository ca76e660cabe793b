package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TokenPrefix starts every secret this package mints, so a leaked one is easy to recognise.
const TokenPrefix = "pct_"

// Principal is who made a request.
type Principal struct {
	ID    string
	Name  string
	Scope state.Scope
}

// String is the audit form: "token:ID (NAME)".
func (p Principal) String() string {
	if p.Name == "" {
		return "token:" + p.ID
	}
	return "token:" + p.ID + " (" + p.Name + ")"
}

// NewSecret returns a fresh token secret and the hash that state.Token stores.
func NewSecret() (secret, hash string) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, HashSecret(secret)
}

// HashSecret returns the hex SHA-256 of a token secret, as state.Token.Hash keeps it.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func newTokenID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "tk_" + hex.EncodeToString(b[:])
}

// bearer extracts the token of an "Authorization: Bearer …" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// authenticate finds the token whose secret's SHA-256 is sum. Every stored hash is compared in
// constant time and the loop never stops early, so timing tells nothing about which tokens
// exist or how close a guess was.
func (s *Server) authenticate(sum [sha256.Size]byte) (Principal, bool) {
	var found Principal
	ok := 0
	if s.configToken != nil {
		if subtle.ConstantTimeCompare(sum[:], s.configToken) == 1 {
			found, ok = Principal{ID: "config", Name: "config", Scope: state.ScopeAdmin}, 1
		}
	}
	var want [sha256.Size]byte
	for _, t := range s.deps.Store.State().Tokens() {
		if len(t.Hash) != 2*sha256.Size {
			continue
		}
		if _, err := hex.Decode(want[:], []byte(t.Hash)); err != nil {
			continue
		}
		if subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
			found, ok = Principal{ID: t.ID, Name: t.Name, Scope: t.Scope}, 1
		}
	}
	return found, ok == 1
}

// failLimiter is a token bucket of tolerated authentication failures per source (IPv6: /64)
// and token: a flood of wrong tokens from an address (a NAT, a shared jump host) locks out those
// wrong tokens, never a valid token used from the same address.
type failLimiter struct {
	mu     sync.Mutex
	burst  float64
	every  time.Duration
	m      map[failKey]*failBucket
	logged map[netip.Addr]time.Time // when a failure of each source was last logged
}

// failKey is a source and the SHA-256 of the token it presented.
type failKey struct {
	src   netip.Addr
	token [sha256.Size]byte
}

type failBucket struct {
	left float64
	at   time.Time
}

// maxFailSources bounds the limiter's memory (buckets, and sources in the log throttle); when
// full, refilled buckets are forgotten first.
const maxFailSources = 10000

func newFailLimiter(burst int, every time.Duration) *failLimiter {
	return &failLimiter{burst: float64(burst), every: every, m: map[failKey]*failBucket{}, logged: map[netip.Addr]time.Time{}}
}

func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (l *failLimiter) refill(b *failBucket, now time.Time) {
	if el := now.Sub(b.at); el > 0 {
		b.left = min(l.burst, b.left+float64(el)/float64(l.every))
		b.at = now
	}
}

// blocked reports whether src has used up its failures with the token whose hash is token.
func (l *failLimiter) blocked(src netip.Addr, token [sha256.Size]byte, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[failKey{sourceKey(src), token}]
	if b == nil {
		return false
	}
	l.refill(b, now)
	return b.left < 1
}

// fail records a failure of src with a token and reports whether to log it (at most one log per
// source per AuthFailureEvery, whatever the tokens, so a flood of bad tokens cannot flood the log).
func (l *failLimiter) fail(src netip.Addr, token [sha256.Size]byte, now time.Time) (log bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := failKey{sourceKey(src), token}
	b := l.m[k]
	if b == nil {
		if len(l.m) >= maxFailSources {
			l.prune(now)
		}
		b = &failBucket{left: l.burst, at: now}
		l.m[k] = b
	}
	l.refill(b, now)
	b.left = max(0, b.left-1)
	if now.Sub(l.logged[k.src]) >= l.every {
		if len(l.logged) >= maxFailSources {
			for s, at := range l.logged {
				if now.Sub(at) >= l.every {
					delete(l.logged, s)
				}
			}
			if len(l.logged) >= maxFailSources {
				clear(l.logged)
			}
		}
		l.logged[k.src] = now
		return true
	}
	return false
}

func (l *failLimiter) prune(now time.Time) {
	for k, b := range l.m {
		l.refill(b, now)
		if b.left >= l.burst {
			delete(l.m, k)
		}
	}
	if len(l.m) >= maxFailSources { // a wide spread attack: start over rather than grow
		clear(l.m)
	}
}

// remoteAddr is the request's peer address (no proxy headers are trusted).
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// hostAllowed applies the DNS rebinding rule to a host name or address (port stripped).
func (s *Server) hostAllowed(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Unmap().IsLoopback() || s.listenIP.IsValid() && !s.listenIP.IsUnspecified() && a.Unmap() == s.listenIP {
			return true
		}
	}
	for _, h := range s.cfg.AllowedHosts {
		if strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

// checkHost refuses requests whose Host or Origin is not this server's (DNS rebinding: a page
// on evil.example rebound to 127.0.0.1 sends Host: evil.example and Origin: http://evil.example).
func (s *Server) checkHost(r *http.Request) *APIError {
	if !s.hostCheck {
		return nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !s.hostAllowed(host) {
		return apiErr(http.StatusForbidden, CodeBadHost, "host %q is not allowed (set admin.allowed_hosts)", trimForLog(host))
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || !s.hostAllowed(u.Hostname()) {
			return apiErr(http.StatusForbidden, CodeBadHost, "origin %q is not allowed", trimForLog(o))
		}
	}
	return nil
}

func trimForLog(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

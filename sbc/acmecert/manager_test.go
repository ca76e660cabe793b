package acmecert

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

func newTestManager(t *testing.T, renewBefore time.Duration) (*Manager, *state.Local) {
	t.Helper()
	st := state.NewLocal()
	m := New(Config{Domains: []string{"sip.example.com"}, Challenge: TLSALPN01, RenewBefore: renewBefore},
		st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return m, st
}

func TestDue(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name        string
		renewBefore time.Duration
		cert        *state.Certificate
		want        bool
		why         string
	}{
		{"none", 0, nil, true, "no certificate"},
		{"47 days, 20 left", 0, &state.Certificate{Domains: []string{"sip.example.com"}, NotBefore: now.Add(-27 * day), NotAfter: now.Add(20 * day)}, false, ""},
		{"47 days, 15 left", 0, &state.Certificate{Domains: []string{"sip.example.com"}, NotBefore: now.Add(-32 * day), NotAfter: now.Add(15 * day)}, true, "renewal due"},
		{"renew_before 30d, 29 left", 30 * day, &state.Certificate{Domains: []string{"sip.example.com"}, NotBefore: now.Add(-61 * day), NotAfter: now.Add(29 * day)}, true, "renewal due"},
		{"domains changed", 0, &state.Certificate{Domains: []string{"old.example.com"}, NotBefore: now, NotAfter: now.Add(90 * day)}, true, "domains changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, st := newTestManager(t, tt.renewBefore)
			if tt.cert != nil {
				c := *tt.cert
				c.CertPEM, c.KeyPEM = []byte("x"), []byte("x") // not loadable: Due reads the state only
				if err := st.Propose(context.Background(), state.PutCertificate(c)); err != nil {
					t.Fatal(err)
				}
			}
			if got, why := m.Due(now); got != tt.want || why != tt.why {
				t.Fatalf("Due = %v %q, want %v %q", got, why, tt.want, tt.why)
			}
		})
	}
}

// TestALPNChallengeAnswer: the certificate answering a CA's acme-tls/1 hello carries the domain
// and the critical acmeIdentifier extension with SHA-256 of the key authorization (RFC 8737),
// built from the replicated challenge on any node; without a challenge the hello is refused.
func TestALPNChallengeAnswer(t *testing.T) {
	m, st := newTestManager(t, 0)
	hello := &tls.ClientHelloInfo{ServerName: "sip.example.com", SupportedProtos: []string{"acme-tls/1"}}
	if _, err := m.GetCertificate(hello); err == nil {
		t.Fatal("answered without a challenge")
	}
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "sip.example.com"}); err != ErrNoCertificate {
		t.Fatalf("no certificate yet: %v", err)
	}
	ch := state.Challenge{Type: TLSALPN01, Domain: "sip.example.com", Token: "tok", KeyAuth: "tok.thumb"}
	if err := st.Propose(context.Background(), state.PutChallenge(ch)); err != nil {
		t.Fatal(err)
	}
	c, err := m.GetCertificate(hello)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "sip.example.com" {
		t.Fatalf("names %v", leaf.DNSNames)
	}
	want := sha256.Sum256([]byte("tok.thumb"))
	found := false
	for _, e := range leaf.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}) {
			var got []byte
			if _, err := asn1.Unmarshal(e.Value, &got); err != nil || string(got) != string(want[:]) || !e.Critical {
				t.Fatalf("acmeIdentifier %x critical=%v err=%v", got, e.Critical, err)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no acmeIdentifier extension")
	}
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com", SupportedProtos: []string{"acme-tls/1"}}); err == nil {
		t.Fatal("answered a challenge for another name")
	}
}

func TestHTTPChallengeAnswer(t *testing.T) {
	m, st := newTestManager(t, 0)
	ch := state.Challenge{Type: HTTP01, Domain: "sip.example.com", Token: "tok", KeyAuth: "tok.thumb"}
	if err := st.Propose(context.Background(), state.PutChallenge(ch)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.HTTPHandler())
	defer srv.Close()
	tests := []struct {
		name, host, path string
		code             int
		body             string
	}{
		{"answer", "sip.example.com", "/.well-known/acme-challenge/tok", 200, "tok.thumb"},
		{"answer with port", "sip.example.com:80", "/.well-known/acme-challenge/tok", 200, "tok.thumb"},
		{"other host", "evil.example.com", "/.well-known/acme-challenge/tok", 404, ""},
		{"unknown token", "sip.example.com", "/.well-known/acme-challenge/nope", 404, ""},
		{"other path", "sip.example.com", "/", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			req.Host = tt.host
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.code || (tt.code == 200 && string(b) != tt.body) {
				t.Fatalf("%d %q, want %d %q", res.StatusCode, b, tt.code, tt.body)
			}
		})
	}
}

// FuzzChallengeRequests: whatever path, host or server name a peer sends, the handlers answer
// without a crash and only the pending challenge's key authorization is ever revealed.
func FuzzChallengeRequests(f *testing.F) {
	f.Add("/.well-known/acme-challenge/tok", "sip.example.com", "sip.example.com")
	f.Add("/.well-known/acme-challenge/", "", "")
	f.Add("/.well-known/acme-challenge/../tok", "SIP.EXAMPLE.COM:0", "\x00")
	f.Add("//", "[::1]:80", strings.Repeat("a", 300))
	st := state.NewLocal()
	m := New(Config{Domains: []string{"sip.example.com"}, Challenge: HTTP01}, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	_ = st.Propose(context.Background(), state.PutChallenge(state.Challenge{Type: HTTP01, Domain: "sip.example.com", Token: "tok", KeyAuth: "tok.thumb"}))
	_ = st.Propose(context.Background(), state.PutChallenge(state.Challenge{Type: TLSALPN01, Domain: "sip.example.com", Token: "tok2", KeyAuth: "tok2.thumb"}))
	h := m.HTTPHandler()
	f.Fuzz(func(t *testing.T, path, host, sni string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path, req.Host = path, host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code == 200 && w.Body.String() != "tok.thumb" {
			t.Fatalf("revealed %q", w.Body.String())
		}
		_, _ = m.GetCertificate(&tls.ClientHelloInfo{ServerName: sni, SupportedProtos: []string{"acme-tls/1"}})
		_, _ = m.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	})
}

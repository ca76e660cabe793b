package config

import (
	"errors"
	"strings"
	"testing"
)

func TestACMEValidation(t *testing.T) {
	const dir = "  directory: https://acme.example/dir\n"
	tests := []struct {
		name, body, wantLine, wantField string // wantField "" means valid
	}{
		{"off by default", "", "", ""},
		{"valid", "acme:\n" + dir + "  domains: [sip.example.com]\n", "", ""},
		{"domains without directory", "acme:\n  domains: [sip.example.com]\n", ":1:", "acme.directory"},
		{"no domains", "acme:\n" + dir, ":1:", "acme.domains"},
		{"ip as domain", "acme:\n" + dir + "  domains: [192.0.2.1]\n", ":3:", "acme.domains[0]"},
		{"wildcard", "acme:\n" + dir + "  domains: ['*.example.com']\n", ":3:", "acme.domains[0]"},
		{"bad challenge", "acme:\n" + dir + "  domains: [a.example.com]\n  challenge: dns-01\n", ":4:", "acme.challenge"},
		{"bad listen", "acme:\n" + dir + "  domains: [a.example.com]\n  challenge_listen: eighty\n", ":4:", "acme.challenge_listen"},
		{"ftp directory", "acme:\n  directory: ftp://acme.example/dir\n  domains: [a.example.com]\n", ":2:", "acme.directory"},
		{"missing ca", "acme:\n" + dir + "  domains: [a.example.com]\n  ca: /nonexistent/ca.pem\n", ":4:", "acme.ca"},
		{"tls listener with acme needs no cert", "sip:\n  listen: [tls://127.0.0.1:5061]\nacme:\n" + dir + "  domains: [a.example.com]\n", "", ""},
		{"public admin with acme", "admin:\n  listen: 0.0.0.0:8443\nacme:\n" + dir + "  domains: [a.example.com]\n  admin: true\n", "", ""},
		{"public admin, acme not for it", "admin:\n  listen: 0.0.0.0:8443\nacme:\n" + dir + "  domains: [a.example.com]\n", ":2:", "admin.listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.body), nil)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("want an ErrInvalid error, got %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantLine) || !strings.Contains(msg, tt.wantField) {
				t.Errorf("error %q: want line %q and field %q", msg, tt.wantLine, tt.wantField)
			}
		})
	}
}

func TestACMEChallengeAddr(t *testing.T) {
	for _, tt := range []struct {
		a    ACME
		want string
	}{
		{ACME{Challenge: "tls-alpn-01"}, "0.0.0.0:443"},
		{ACME{Challenge: "http-01"}, "0.0.0.0:80"},
		{ACME{Challenge: "http-01", ChallengeListen: "off"}, ""},
		{ACME{Challenge: "http-01", ChallengeListen: "127.0.0.1:8080"}, "127.0.0.1:8080"},
	} {
		if got := tt.a.ChallengeAddr(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.a, got, tt.want)
		}
	}
}

package guard

import (
	"errors"
	"net/netip"
	"testing"
)

func TestMatcher(t *testing.T) {
	m, err := CompilePatterns([]string{
		"10.0.0.0/8", "192.0.2.7", "[2001:db8::1]", "2001:db8:5::/48", "::ffff:198.51.100.0/120", "203.0.113.5:5060",
		"example.com", "*.example.org", "sip:alice@partner.net;transport=tls", "<sips:*@secure.example>",
		"10??@pbx.example", "Bob@MiXeD.example", "ops@[2001:db8::9]", "host.example:5060",
	})
	if err != nil {
		t.Fatal(err)
	}
	src := []struct {
		ip   string
		want bool
	}{
		{"10.1.2.3", true}, {"11.0.0.1", false}, {"192.0.2.7", true}, {"192.0.2.8", false},
		{"2001:db8::1", true}, {"2001:db8:5:ffff::1", true}, {"2001:db8:6::1", false},
		{"198.51.100.20", true}, {"::ffff:10.0.0.1", true}, {"203.0.113.5", true}, {"fe80::1%eth0", false},
	}
	for _, tt := range src {
		if got := m.MatchSource(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("MatchSource(%s) = %v", tt.ip, got)
		}
	}
	callers := []struct {
		user, host string
		want       bool
	}{
		{"anyone", "example.com", true},
		{"anyone", "EXAMPLE.COM.", true},
		{"anyone", "sub.example.com", false},
		{"x", "a.example.org", true},
		{"x", "example.org", false},
		{"alice", "partner.net", true},
		{"ALICE", "Partner.Net", true},
		{"%61lice", "partner.net", true},
		{"mallory", "partner.net", false},
		{"", "secure.example", true},
		{"anything", "secure.example", true},
		{"1001", "pbx.example", true},
		{"101", "pbx.example", false},
		{"bob", "mixed.example", true},
		{"ops", "[2001:db8::9]", true},
		{"ops", "2001:db8::9", true},
		{"x", "host.example", true},
		{"x", "10.1.2.3", false}, // CIDR entries never match URI hosts
		{"x", "", false},
	}
	for _, tt := range callers {
		if got := m.MatchCaller(tt.user, tt.host); got != tt.want {
			t.Errorf("MatchCaller(%q, %q) = %v", tt.user, tt.host, got)
		}
	}
	if m.Len() != 14 {
		t.Errorf("Len = %d", m.Len())
	}
}

func TestMatcherErrors(t *testing.T) {
	m, err := CompilePatterns([]string{"", "10.0.0.0/33", "@example.com", "bad host", "ok.example", "a\x00b@x.example", "sip:"})
	if !errors.Is(err, ErrPattern) {
		t.Fatalf("err = %v", err)
	}
	if m.Len() != 1 || !m.MatchCaller("x", "ok.example") {
		t.Fatalf("good entries must survive: %d", m.Len())
	}
	var nilM *Matcher
	if nilM.Match(netip.MustParseAddr("10.0.0.1"), "a", "b") || nilM.Len() != 0 {
		t.Fatal("nil matcher matched")
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"", "", true}, {"", "a", false}, {"*", "", true}, {"*", "abc", true}, {"a*", "abc", true},
		{"*c", "abc", true}, {"*b*", "abc", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"*.example.com", "a.b.example.com", true}, {"*.example.com", "example.com", false},
		{"a*b*c", "aXbYbZc", true}, {"a*b*c", "aXbYbZ", false}, {"**", "x", true}, {"?*", "", false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.p, []byte(tt.s)); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v", tt.p, tt.s, got)
		}
	}
}

func TestScannerMatcher(t *testing.T) {
	tests := []struct {
		ua   string
		want string
	}{
		{"friendly-scanner", "friendly-scanner"},
		{"Friendly-Scanner 1.0", "friendly-scanner"},
		{"sipvicious/0.3.4", "sipvicious"},
		{"VaxSIPUserAgent/3.1", "VaxSIPUserAgent"},
		{"pplsip", "pplsip"},
		{"something sipcli/v1.8 more", "sipcli"},
		{"Poly/RealPresence 6.2", ""},
		{"Cisco-SIPGateway/IOS-15.6", ""},
		{"Asterisk PBX 18.1", ""},
		{"", ""},
		{"ssip-scan", "sip-scan"}, // failure link: "ss" then "sip-scan"
		{"sipscasip-scan", "sip-scan"},
	}
	defaultUA := compileDefaultUA(t)
	for _, tt := range tests {
		got, ok := defaultUA.match(tt.ua)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("match(%q) = %q %v, want %q", tt.ua, got, ok, tt.want)
		}
	}
	m, err := compileUA([]string{"he", "she", "his", "hers", "", string(make([]byte, 200))})
	if !errors.Is(err, ErrPattern) {
		t.Fatalf("err = %v", err)
	}
	for ua, want := range map[string]string{"ushers": "she", "ahishe": "his", "xhex": "he", "h": ""} {
		if got, _ := m.match(ua); got != want {
			t.Errorf("match(%q) = %q, want %q", ua, got, want)
		}
	}
}

// compileDefaultUA compiles DefaultScannerUserAgents, failing the test or benchmark if it does
// not compile.
func compileDefaultUA(tb testing.TB) *uaMatcher {
	tb.Helper()
	m, err := compileUA(DefaultScannerUserAgents)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

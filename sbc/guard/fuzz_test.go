package guard

import (
	"net/netip"
	"strings"
	"testing"
)

// naiveContainsFold is the reference for the scanner automaton and containsFold.
func naiveContainsFold(s, sub string) bool {
	return strings.Contains(asciiLower(s), asciiLower(sub))
}

func FuzzScannerMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"friendly-scanner", "friendly-scanner"}, {"SIPVicious/0.3.4", "sipvicious"}, {"ssip-scan", "sip-scan"},
		{"Poly/RealPresence", "sipcli"}, {"aaab", "aab"}, {"", "x"}, {"ÄÖÜ sipcli", "SIPCLI"}, {"\xff\xfe", "\xfe"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, ua, pat string) {
		// Defaults plus one fuzzed pattern: any pattern found must really be in ua, and the
		// automaton must find one exactly when a naive search does.
		pats := append(append([]string(nil), DefaultScannerUserAgents...), pat)
		m, _ := compileUA(pats)
		got, ok := m.match(ua)
		want := false
		for _, p := range m.patterns {
			if naiveContainsFold(ua, p) {
				want = true
			}
		}
		if ok != want {
			t.Fatalf("match(%q) = %q %v, naive %v (patterns %q)", ua, got, ok, want, m.patterns)
		}
		if ok && !naiveContainsFold(ua, got) {
			t.Fatalf("match(%q) = %q, which it does not contain", ua, got)
		}
		if containsFold(ua, asciiLower(pat)) != naiveContainsFold(ua, pat) {
			t.Fatalf("containsFold(%q, %q)", ua, pat)
		}
	})
}

// refGlob is a plain recursive glob for reference.
func refGlob(p, s string) bool {
	if p == "" {
		return s == ""
	}
	switch p[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if refGlob(p[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && refGlob(p[1:], s[1:])
	}
	return s != "" && s[0] == p[0] && refGlob(p[1:], s[1:])
}

func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"*.example.com", "a.example.com"}, {"a*b*c", "aXbYbZc"}, {"?*", ""}, {"**a", "ba"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 16 || len(s) > 64 || strings.Count(p, "*") > 4 {
			return // keep the reference's exponential worst case out
		}
		if got, want := globMatch(p, []byte(s)), refGlob(p, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, want %v", p, s, got, want)
		}
	})
}

func FuzzMatcher(f *testing.F) {
	for _, s := range [][3]string{
		{"*@example.com", "alice", "example.com"}, {"sip:bob@x.org;transport=tls", "BOB", "X.ORG."},
		{"10.0.0.0/8", "", "10.1.2.3"}, {"[2001:db8::1]", "u", "[2001:db8::1]"}, {"a%41@b", "a%41", "b"},
		{"*.example.org", "", "deep.sub.example.org"}, {"x@[::1]:5060", "x", "::1"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, user, host string) {
		m, err := CompilePatterns([]string{pattern})
		if err == nil && m.Len() != 1 {
			t.Fatalf("%q: compiled %d entries without error", pattern, m.Len())
		}
		got := m.MatchCaller(user, host)
		// A pattern that is exactly user@host (no globs) must match that caller.
		if err == nil && !strings.ContainsAny(pattern, "*?;<>%[]:/ \t") && strings.Count(pattern, "@") == 1 &&
			!strings.HasPrefix(strings.ToLower(pattern), "sip") {
			u, h, _ := strings.Cut(pattern, "@")
			if h != "" && !strings.HasSuffix(h, ".") && !m.MatchCaller(u, h) {
				t.Fatalf("%q does not match its own user and host", pattern)
			}
		}
		_ = got
		if a, err := netip.ParseAddr(host); err == nil {
			_ = m.MatchSource(a)
		}
	})
}

func FuzzParseFeed(f *testing.F) {
	for _, s := range []string{
		"# DROP list\n203.0.113.0/24 ; SBL1\n198.51.100.7\n",
		`["198.51.100.7", {"ip": "2001:db8::1"}, {"cidr": "203.0.113.0/24"}]`,
		"198.51.100.0-198.51.100.9\n::ffff:1.2.3.4\n0.0.0.0/0\n",
		"<html>502</html>", "", "[", `[{"ip": 5}]`, "\xef\xbb\xbf1.2.3.4,x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, bad, err := ParseFeed(data)
		if err != nil && len(ps) != 0 {
			t.Fatalf("error with %d prefixes", len(ps))
		}
		if bad < 0 {
			t.Fatal("negative bad")
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("prefix %v not normalised", p)
			}
			if (p.Addr().Is4() && p.Bits() < minFeedBits4) || (p.Addr().Is6() && p.Bits() < minFeedBits6) {
				t.Fatalf("prefix %v too broad", p)
			}
		}
	})
}

func FuzzCheck(f *testing.F) {
	f.Add("INVITE", "boardroom", "example.com", "Alice", "alice", "partner.net", "boardroom", "example.com", "Poly", 70, false)
	f.Add("INVITE", "100", "192.0.2.1", "sipvicious", "100", "1.1.1.1", "100", "192.0.2.1", "friendly-scanner", 70, false)
	f.Add("REGISTER", "", "example.com", "", "1000", "example.com", "1000", "example.com", "sipcli/v1.8", -1, false)
	f.Add("OPTIONS", "", "[2001:db8::1]", "", "", "[::1]", "", "x", "", 0, true)
	g, _, _ := newTestGuard(f, func(c *Config) {
		c.Deny = []string{"*@spam.example", "203.0.113.0/24"}
		c.Allow = []string{"trusted.example"}
		c.Events = 100
	})
	f.Fuzz(func(t *testing.T, method, ruser, rhost, fname, fuser, fhost, tuser, thost, ua string, mf int, registered bool) {
		r := &Request{
			Source: netip.MustParseAddrPort("198.51.100.7:5060"), Transport: "UDP", Method: method,
			RURIUser: ruser, RURIHost: rhost, FromName: fname, FromUser: fuser, FromHost: fhost,
			ToUser: tuser, ToHost: thost, UserAgent: ua, MaxForwards: mf, Registered: registered,
		}
		v := g.Check(r)
		switch v.Action {
		case Allow:
			if v.Rule != "" || v.Code != 0 {
				t.Fatalf("allow with %+v", v)
			}
		case Reject:
			if v.Code < 400 || v.Code > 699 || v.Rule == "" || v.Reason == "" {
				t.Fatalf("reject %+v", v)
			}
		case Drop:
			if v.Code != 0 || v.Rule == "" {
				t.Fatalf("drop %+v", v)
			}
		default:
			t.Fatalf("action %v", v.Action)
		}
		for _, e := range g.Recent(EventFilter{}, 1) {
			if len(e.UserAgent) > maxEventField || len(e.From) > maxEventField {
				t.Fatalf("event fields not clipped: %d", len(e.UserAgent))
			}
		}
	})
}

func FuzzIsAutoAnswer(f *testing.F) {
	for _, s := range [][2]string{{"Call-Info", "<sip:x>;answer-after=0"}, {"Alert-Info", "info=alert-autoanswer"}, {"Answer-Mode", "Manual"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		got := IsAutoAnswer(name, value)
		known := false
		for _, h := range autoAnswerHeaders {
			if strings.EqualFold(h, name) {
				known = true
			}
		}
		if got && !known {
			t.Fatalf("IsAutoAnswer(%q) true for a header not in AutoAnswerHeaders", name)
		}
	})
}

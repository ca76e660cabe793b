package sdp

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSetup(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Setup
		ok   bool
	}{
		{"active", SetupActive, true},
		{"passive", SetupPassive, true},
		{"actpass", SetupActPass, true},
		{"holdconn", SetupHoldConn, true},
		{" ActPass ", SetupActPass, true},
		{"", "", false},
		{"act pass", "", false},
		{"passive;x", "", false},
		{strings.Repeat("a", 4096), "", false},
	} {
		got, err := ParseSetup(tc.in)
		if got != tc.want || (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadSetup)) {
			t.Errorf("ParseSetup(%.20q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && len(err.Error()) > 100 {
			t.Errorf("error repeats a long value: %d bytes", len(err.Error()))
		}
	}
}

// TestTCPMedia: the facts Parse reports about TCP m-lines, and the role each
// one has (absent a=setup is active; conflicting or unknown values fail).
func TestTCPMedia(t *testing.T) {
	s, err := Parse(readFile(t, "testdata/golden/tcp_bfcp_roles.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []struct {
		role       Setup
		bad        bool
		relayable  bool
		connection string
	}{
		{SetupActive, false, true, "new"},
		{SetupPassive, false, true, "new"},
		{SetupHoldConn, false, true, "existing"},
		{SetupActive, false, true, "existing"}, // a=setup:ACTIVE twice: case does not matter, they agree
		{"", true, true, ""},
		{SetupActPass, false, false, ""}, // TCP/MSRP: not relayable
	} {
		m := s.Media[i]
		role, err := m.SetupRole()
		if role != w.role || (err != nil) != w.bad || m.RelayableTCP() != w.relayable || !m.IsTCP() || m.Relayable() ||
			m.Connection != w.connection {
			t.Errorf("m-line %d %+v: role %q err %v", i, m, role, err)
		}
	}
	m := Media{Proto: "TCP/BFCP", Setup: "active\npassive"}
	if _, err := m.SetupRole(); !errors.Is(err, ErrBadSetup) {
		t.Errorf("conflicting a=setup accepted: %v", err)
	}
	for _, p := range []string{"UDP/BFCP", "RTP/AVP", "UDP/TLS/BFCP"} {
		if (Media{Proto: p}).IsTCP() || (Media{Proto: p}).RelayableTCP() {
			t.Errorf("%s reported TCP", p)
		}
	}
}

// TestRewriteSetup: a Target's Setup replaces a=setup in place, drops
// duplicates, adds one when absent, and leaves a=connection and
// a=fingerprint alone, on both the pion path and the line fallback.
func TestRewriteSetup(t *testing.T) {
	in := readFile(t, "testdata/golden/tcp_bfcp_roles.sdp")
	o := Options{Addr: relayAddr, Version: 2, Media: []Target{
		{Port: 40000, Setup: SetupPassive}, {Port: 40002, Setup: SetupActive}, {Port: 40004}, {Port: 40006, Setup: SetupPassive},
	}}
	d := parseLines(in)
	viaLines := d.rewrite(o, newHoldPolicy(d.info(), sessionHasICE(d), o))
	viaPion, err := Rewrite(in, o)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string][]byte{"pion": viaPion, "lines": viaLines} {
		s, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{"passive", "active", "holdconn", "passive", "sideways", "actpass"} {
			if s.Media[i].Setup != want {
				t.Errorf("%s: m-line %d a=setup %q, want %q\n%s", name, i, s.Media[i].Setup, want, out)
			}
		}
		if !strings.Contains(string(out), "m=application 40000 TCP/BFCP *\r\na=floorctrl:c-s\r\na=connection:new\r\na=setup:passive\r\n") ||
			strings.Count(string(out), "a=connection:existing") != 2 {
			t.Errorf("%s: attributes moved or lost:\n%s", name, out)
		}
	}
}

func FuzzParseSetup(f *testing.F) {
	for _, s := range []string{"active", "passive", "actpass", "holdconn", " PASSIVE", "", "x", "active\npassive", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := ParseSetup(v)
		if err != nil {
			if r != "" || !errors.Is(err, ErrBadSetup) {
				t.Fatalf("ParseSetup(%q) = %q, %v", v, r, err)
			}
		} else if r2, err := ParseSetup(string(r)); err != nil || r2 != r {
			t.Fatalf("role %q does not round-trip: %q %v", r, r2, err)
		}
		m := Media{Proto: "TCP/BFCP", Setup: v}
		role, err := m.SetupRole()
		if err == nil {
			switch role {
			case SetupActive, SetupPassive, SetupActPass, SetupHoldConn:
			default:
				t.Fatalf("SetupRole(%q) = %q", v, role)
			}
		}
		// A body carrying the value must parse, rewrite and keep exactly the role written.
		body := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=application 5070 TCP/BFCP *\r\na=setup:" + v + "\r\n"
		s, err := Parse([]byte(body))
		if err != nil {
			return
		}
		out, err := Rewrite([]byte(body), Options{Addr: relayAddr, Version: 2, Media: []Target{{Port: 40000, Setup: SetupPassive}}})
		if err != nil {
			return
		}
		s, err = Parse(out)
		if err != nil || len(s.Media) != 1 || s.Media[0].Setup != "passive" {
			t.Fatalf("rewrite kept a=setup %q:\n%q", s.Media[0].Setup, out)
		}
	})
}

package sdp

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	psdp "github.com/pion/sdp/v3"
)

var update = flag.Bool("update", false, "rewrite golden files")

var relayAddr = netip.MustParseAddr("203.0.113.10")

// optionsFor builds the options a session manager would: one relay port per
// relayable, non-rejected m-line; rtcp-mux kept where offered; TCP BFCP
// lines whose sender can connect (active, actpass, no a=setup) get a port
// and a=setup:passive, other TCP lines are rejected.
func optionsFor(s *Session) Options {
	o := Options{Addr: relayAddr, Version: 5, StripICE: true}
	for i, m := range s.Media {
		t := Target{}
		switch {
		case m.Rejected():
		case m.Relayable():
			t = Target{Port: 40000 + 2*i, RTCPMux: m.RTCPMux}
		case m.RelayableTCP():
			if r, err := m.SetupRole(); err == nil && (r == SetupActive || r == SetupActPass) {
				t = Target{Port: 40000 + 2*i, Setup: SetupPassive}
			}
		}
		o.Media = append(o.Media, t)
	}
	return o
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden rewrites every testdata/golden/*.sdp and compares with its
// .golden file (go test -update regenerates them). Each output must parse
// with pion and keep its m-line count.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.sdp")
	if len(files) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in := readFile(t, f)
			s, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Rewrite(in, optionsFor(s))
			if err != nil {
				t.Fatal(err)
			}
			var sd psdp.SessionDescription
			if err := sd.Unmarshal(out); err != nil {
				t.Fatalf("output does not parse: %v\n%s", err, out)
			}
			if len(sd.MediaDescriptions) != len(s.Media) {
				t.Fatalf("m-lines %d, want %d", len(sd.MediaDescriptions), len(s.Media))
			}
			golden := strings.TrimSuffix(f, ".sdp") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want := readFile(t, golden); string(want) != string(out) {
				t.Fatalf("output differs from %s:\n%s", golden, out)
			}
		})
	}
}

func TestParsePolycom(t *testing.T) {
	s, err := Parse(readFile(t, "testdata/golden/polycom_offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		typ, proto, content, label string
		port                       int
		relayable                  bool
		rtcp                       string
		pts                        []uint8
	}{
		{"audio", "RTP/AVP", "", "", 49170, true, "192.168.10.20:49171", []uint8{115, 102, 9, 0, 8, 101}},
		{"video", "RTP/AVP", "main", "1", 49172, true, "192.168.10.20:49173", []uint8{109, 97, 96, 34, 31}},
		{"video", "RTP/AVP", "slides", "3", 49174, true, "192.168.10.20:49175", []uint8{109, 96, 34}},
		{"application", "UDP/BFCP", "", "", 49176, true, "", nil},
		{"application", "TCP/BFCP", "", "", 49178, false, "", nil},
	}
	if len(s.Media) != len(want) {
		t.Fatalf("%d m-lines", len(s.Media))
	}
	for i, w := range want {
		m := s.Media[i]
		rtcp := ""
		if m.RTCP.IsValid() {
			rtcp = m.RTCP.String()
		}
		if m.Type != w.typ || m.Proto != w.proto || m.Content != w.content || m.Label != w.label ||
			m.Port != w.port || m.Relayable() != w.relayable || rtcp != w.rtcp || !slices.Equal(m.PayloadTypes, w.pts) {
			t.Errorf("m-line %d = %+v", i, m)
		}
		if m.Addr != netip.MustParseAddr("192.168.10.20") || m.Direction != SendRecv {
			t.Errorf("m-line %d addr %v dir %v", i, m.Addr, m.Direction)
		}
	}
	if s.Media[0].ClockRates[115] != 32000 || s.Media[1].ClockRates[109] != 90000 || s.Media[0].ClockRates[0] != 8000 {
		t.Errorf("clock rates %v %v", s.Media[0].ClockRates, s.Media[1].ClockRates)
	}
}

func TestParseHoldAndDirections(t *testing.T) {
	s, err := Parse(readFile(t, "testdata/golden/hold.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.OnHold() || s.Media[0].Direction != SendOnly || !s.Media[1].Rejected() {
		t.Fatalf("%+v", s.Media)
	}
	s, _ = Parse(readFile(t, "testdata/golden/polycom_offer.sdp"))
	if s.OnHold() {
		t.Fatal("polycom offer reported on hold")
	}
}

func TestRewriteRules(t *testing.T) {
	in := readFile(t, "testdata/golden/cisco_ice_offer.sdp")
	s, _ := Parse(in)
	for _, tc := range []struct {
		name     string
		mod      func(*Options)
		want     []string
		mustNot  []string
		fallback bool
	}{
		{name: "strip ICE, keep crypto, label, content", want: []string{"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:JcoR", "a=label:11", "a=content:slides", "a=rtcp-mux", "c=IN IP4 203.0.113.10", "o=tandberg 3 5 IN IP4 203.0.113.10", "m=audio 40000 RTP/SAVP 108 101"}, mustNot: []string{"candidate", "ice-", "10.47.1.5", "198.51.100.7"}},
		{name: "keep ICE when asked", mod: func(o *Options) { o.StripICE = false }, want: []string{"a=candidate:1 1 UDP", "a=ice-ufrag:6vLh"}},
		{name: "drop rtcp-mux when the answer lacks it", mod: func(o *Options) {
			for i := range o.Media {
				o.Media[i].RTCPMux = false
			}
		}, mustNot: []string{"rtcp-mux"}},
		{name: "reject all", mod: func(o *Options) { o.Media = nil }, want: []string{"m=audio 0 RTP/SAVP", "m=application 0 UDP/BFCP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := optionsFor(s)
			if tc.mod != nil {
				tc.mod(&o)
			}
			out, err := Rewrite(in, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("missing %q in\n%s", w, out)
				}
			}
			for _, w := range tc.mustNot {
				if strings.Contains(string(out), w) {
					t.Errorf("unexpected %q in\n%s", w, out)
				}
			}
		})
	}
}

// TestFallbackMatchesPion: on a body pion accepts, the line-based rewriter
// must produce the same SDP as the pion path (so the fallback is trustworthy).
func TestFallbackMatchesPion(t *testing.T) {
	for _, f := range []string{"polycom_offer.sdp", "cisco_ice_offer.sdp", "hold.sdp", "webrtc_dtls.sdp",
		"poly_tcp_bfcp_offer.sdp", "poly_tcp_bfcp_answer.sdp", "tcp_tls_bfcp_offer.sdp", "tcp_bfcp_roles.sdp"} {
		t.Run(f, func(t *testing.T) {
			in := readFile(t, "testdata/golden/"+f)
			s, _ := Parse(in)
			o := optionsFor(s)
			viaPion, err := Rewrite(in, o)
			if err != nil {
				t.Fatal(err)
			}
			d := parseLines(in)
			viaLines := d.rewrite(o, newHoldPolicy(d.info(), sessionHasICE(d), o))
			var a, b psdp.SessionDescription
			if err := a.Unmarshal(viaPion); err != nil {
				t.Fatal(err)
			}
			if err := b.Unmarshal(viaLines); err != nil {
				t.Fatalf("fallback output does not parse: %v\n%s", err, viaLines)
			}
			ma, _ := a.Marshal()
			mb, _ := b.Marshal()
			if string(ma) != string(mb) {
				t.Fatalf("pion path:\n%s\nline path:\n%s", ma, mb)
			}
		})
	}
}

func TestRewriteNotSDP(t *testing.T) {
	for _, in := range []string{"", "hello world", "\x00\x01"} {
		if _, err := Rewrite([]byte(in), Options{Addr: relayAddr}); err == nil {
			t.Errorf("Rewrite(%q) succeeded", in)
		}
	}
}

func FuzzRewrite(f *testing.F) {
	files, _ := filepath.Glob("testdata/golden/*.sdp")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, in []byte, strip bool) {
		s, err := Parse(in)
		if err != nil {
			return
		}
		o := optionsFor(s)
		o.StripICE = strip
		out, err := Rewrite(in, o)
		if err != nil {
			return
		}
		var sd psdp.SessionDescription
		if err := sd.Unmarshal(out); err != nil {
			t.Fatalf("output does not parse: %v\n%q", err, out)
		}
		if len(sd.MediaDescriptions) != len(s.Media) {
			t.Fatalf("m-lines %d, want %d", len(sd.MediaDescriptions), len(s.Media))
		}
	})
}

func BenchmarkRewrite(b *testing.B) { benchRewrite(b, "testdata/golden/polycom_offer.sdp") }

// BenchmarkRewriteFallback rewrites a body out of the RFC 4566 order, which pion refuses: the
// line-based path.
func BenchmarkRewriteFallback(b *testing.B) { benchRewrite(b, "testdata/golden/broken_order.sdp") }

func benchRewrite(b *testing.B, file string) {
	in, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	s, _ := Parse(in)
	o := optionsFor(s)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rewrite(in, o); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSessionRewriteNeedsParse: Session.Rewrite works on what Parse read; a Session built
// otherwise has no body to rewrite.
func TestSessionRewriteNeedsParse(t *testing.T) {
	if _, err := (&Session{Media: []Media{{Port: 4000}}}).Rewrite(Options{Addr: relayAddr}); !errors.Is(err, ErrNotSDP) {
		t.Fatalf("err = %v, want ErrNotSDP", err)
	}
}

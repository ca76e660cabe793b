package b2bua

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

func TestBetterResponse(t *testing.T) {
	for _, tt := range []struct {
		a, b int
		want bool
	}{
		{486, 0, true},
		{486, 408, true},  // a heard answer beats a silent branch
		{408, 486, false}, //
		{486, 503, true},  // 4xx before 5xx
		{503, 486, false},
		{603, 486, true}, // 6xx always wins
		{486, 603, false},
		{404, 486, false}, // same class: first one stays
	} {
		if got := better(tt.a, tt.b); got != tt.want {
			t.Errorf("better(%d, %d) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSessionExpires(t *testing.T) {
	for _, tt := range []struct {
		hdr, val string
		want     time.Duration
		ok       bool
	}{
		{"Session-Expires", "1800;refresher=uac", 1800 * time.Second, true},
		{"Session-Expires", " 90 ", 90 * time.Second, true},
		{"x", "600", 600 * time.Second, true},
		{"Session-Expires", "-5", 0, false},
		{"Session-Expires", "soon", 0, false},
	} {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Host: "a"})
		req.AppendHeader(sip.NewHeader(tt.hdr, tt.val))
		got, ok := sessionExpires(req)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: %s -> %v %v", tt.hdr, tt.val, got, ok)
		}
	}
}

func TestAutoAnswerHeaders(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		want        bool
	}{
		{"Call-Info", "<sip:x>;answer-after=0", true},
		{"Call-Info", "<http://example.com/photo.png>;purpose=icon", false},
		{"Alert-Info", "<http://127.0.0.1/Bellcore-dr4>;info=alert-autoanswer", true},
		{"Alert-Info", "<urn:alert:service:normal>", false},
		{"Answer-Mode", "Auto", true},
		{"P-Auto-Answer", "normal", true},
		{"Subject", "auto answer", false},
	} {
		if got := guard.IsAutoAnswer(tt.name, tt.value); got != tt.want {
			t.Errorf("guard.IsAutoAnswer(%s: %s) = %v", tt.name, tt.value, got)
		}
	}
}

func TestCopyHeadersPolicy(t *testing.T) {
	src := sip.NewRequest(sip.INVITE, sip.Uri{Host: "a"})
	for _, h := range [][2]string{{"P-Asserted-Identity", "<sip:ceo@x>"}, {"Remote-Party-ID", "<sip:x>"},
		{"Subject", "weekly"}, {"Call-Info", "<sip:x>;answer-after=0"}, {"User-Agent", "Cisco"}, {"X-Internal", "1"}} {
		src.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	dst := sip.NewRequest(sip.INVITE, sip.Uri{Host: "b"})
	copyHeaders(src, dst, true, false)
	for _, gone := range []string{"P-Asserted-Identity", "Remote-Party-ID", "Call-Info", "User-Agent", "X-Internal"} {
		if dst.GetHeader(gone) != nil {
			t.Errorf("%s crossed legs", gone)
		}
	}
	if dst.GetHeader("Subject") == nil {
		t.Error("Subject did not cross")
	}
	dst2 := sip.NewRequest(sip.INVITE, sip.Uri{Host: "b"})
	copyHeaders(src, dst2, false, true)
	if dst2.GetHeader("Call-Info") == nil || dst2.GetHeader("User-Agent") == nil {
		t.Error("Call-Info/User-Agent should pass when allowed")
	}
}

func FuzzSessionExpires(f *testing.F) {
	for _, s := range []string{"1800;refresher=uac", "x", "", ";;;", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Host: "a"})
		req.AppendHeader(sip.NewHeader("Session-Expires", v))
		if d, ok := sessionExpires(req); ok && d <= 0 {
			t.Fatalf("%q gave %v", v, d)
		}
	})
}

func FuzzHeaderPolicy(f *testing.F) {
	f.Add("Call-Info", "<sip:x>;answer-after=0", "5 1 INVITE")
	f.Add("Alert-Info", "", "")
	f.Fuzz(func(t *testing.T, name, value, rack string) {
		_ = guard.IsAutoAnswer(name, value)
		_ = splitFields(rack)
		m := sip.NewRequest(sip.INVITE, sip.Uri{Host: "a"})
		m.AppendHeader(sip.NewHeader("Supported", value))
		_ = hasOption(m, "Supported", name)
	})
}

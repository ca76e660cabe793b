package b2bua

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// injections are header values that try to start a header line of their own on the other leg:
// bare LF (sipgo splits lines on CRLF only, so it stays in the value), bare CR, CRLF, and other
// control characters.
var injections = []string{
	"hi\nCall-Info: <sip:x>;answer-after=0",
	"hi\rCall-Info: <sip:x>;answer-after=0",
	"hi\r\nCall-Info: <sip:x>;answer-after=0",
	"hi\n\tCall-Info: <sip:x>;answer-after=0",
	"hi\x00Call-Info: <sip:x>;answer-after=0",
	"hi\x0bCall-Info: <sip:x>;answer-after=0",
	"hi\x7fCall-Info: <sip:x>;answer-after=0",
}

// relayed are all the headers copyHeaders relays (with userAgent).
func relayed() []string { return append(append([]string{}, passHeaders...), "User-Agent", "Server") }

// lenientNames splits a message's header block on any line end, as a peer that accepts bare LF
// or CR does, and returns the header names it would see (continuation lines belong to the
// previous header).
func lenientNames(msg string) []string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	var out []string
	for i, l := range strings.FieldsFunc(head, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if i == 0 || l[0] == ' ' || l[0] == '\t' {
			continue
		}
		name, _, _ := strings.Cut(l, ":")
		out = append(out, strings.ToLower(strings.TrimSpace(name)))
	}
	return out
}

func names(m *sip.Request) []string {
	var out []string
	for _, h := range m.Headers() {
		out = append(out, strings.ToLower(h.Name()))
	}
	return out
}

func TestCopyHeadersDropsLineBreaks(t *testing.T) {
	for _, name := range relayed() {
		for _, v := range injections {
			src := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "room", Host: "a.example"})
			src.AppendHeader(sip.NewHeader(name, v))
			src.AppendHeader(sip.NewHeader(name, "fine"))
			src.SetBody([]byte("v=0\r\n"))
			for _, strip := range []bool{true, false} {
				dst := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "room", Host: "b.example"})
				copyHeaders(src, dst, strip, true)
				for _, h := range dst.Headers() {
					if strings.Contains(h.Value(), "Call-Info") {
						t.Errorf("%s %q (strip %v): relayed as %s: %q", name, v, strip, h.Name(), h.Value())
					}
				}
				if got := lenientNames(dst.String()); strings.Contains(strings.Join(got, ","), "call-info") && name != "Call-Info" {
					t.Errorf("%s %q: a lenient peer reads headers %v", name, v, got)
				}
				if fine := dst.GetHeader(name); (fine == nil || fine.Value() != "fine") && !(strip && guard.IsAutoAnswer(name, "fine")) {
					t.Errorf("%s: the clean copy was not relayed", name)
				}
			}
		}
	}
}

func TestDisplayNameLineBreaks(t *testing.T) {
	for _, v := range injections {
		if got := displayName(v); got != "" {
			t.Errorf("displayName(%q) = %q", v, got)
		}
	}
	for _, v := range []string{"Alice", `Bob \"the\" Builder`, "Zoë\tRoom"} {
		if got := displayName(v); got != v {
			t.Errorf("displayName(%q) = %q, want it kept", v, got)
		}
	}
}

func TestUnsafeNeeded(t *testing.T) {
	mk := func(fromUser, ct string, body bool) *sip.Request {
		r := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "room", Host: "a.example"})
		f := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: fromUser, Host: "x.example"}}
		r.AppendHeader(f)
		if ct != "" {
			r.AppendHeader(sip.NewHeader("Content-Type", ct))
		}
		if body {
			r.SetBody([]byte("v=0\r\n"))
		}
		return r
	}
	for _, tt := range []struct {
		name string
		req  *sip.Request
		want string
	}{
		{"clean", mk("eve", "application/sdp", true), ""},
		{"LF in Content-Type with a body", mk("eve", "application/sdp\nCall-Info: <sip:x>;answer-after=0", true), "Content-Type"},
		{"LF in Content-Type without a body", mk("eve", "application/sdp\nX: y", false), ""},
		{"LF in the From user", mk("eve\nCall-Info: <sip:x>", "", false), "From"},
	} {
		if got := unsafeNeeded(tt.req); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzCopyHeaders: whatever bytes a relayed header's value holds, the message copyHeaders
// builds has exactly the header lines it should, for sipgo's parser and for a peer that splits
// lines on bare LF or CR too.
func FuzzCopyHeaders(f *testing.F) {
	for i := range relayed() {
		for _, v := range injections {
			f.Add(uint8(i), v, true)
		}
	}
	f.Add(uint8(0), "application/sdp", false)
	f.Add(uint8(5), "hi", false)
	f.Add(uint8(9), "<sip:x>;answer-after=0", true)
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, idx uint8, value string, strip bool) {
		all := relayed()
		name := all[int(idx)%len(all)]
		src := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "room", Host: "a.example"})
		src.AppendHeader(sip.NewHeader(name, value))
		src.SetBody([]byte("v=0\r\n"))
		dst := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "room", Host: "b.example"})
		dst.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"))
		dst.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "a", Host: "b.example"}})
		dst.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "room", Host: "b.example"}})
		cid := sip.CallIDHeader("c1")
		dst.AppendHeader(&cid)
		dst.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
		copyHeaders(src, dst, strip, true)
		want := names(dst)
		wire := dst.String()
		if got := lenientNames(wire); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: %q: a lenient peer reads %v, we wrote %v\n%s", name, value, got, want, wire)
		}
		m, err := parser.ParseSIP([]byte(wire))
		if err != nil {
			return // refused by the peer's parser: nothing injected
		}
		var got []string
		for _, h := range m.(*sip.Request).Headers() {
			got = append(got, strings.ToLower(h.Name()))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: %q: sipgo parses %v, we wrote %v\n%s", name, value, got, want, wire)
		}
	})
}

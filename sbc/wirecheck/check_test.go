package wirecheck

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
)

const sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

// ok200 is a well-formed 200 OK with SDP; extra headers go before Content-Length, and length
// < 0 means the body's true length.
func ok200(extra string, length int) string {
	if length < 0 {
		length = len(sdp)
	}
	return "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n" +
		"To: <sip:c@d>;tag=2\r\nCall-ID: x@y\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5060>\r\n" +
		"Content-Type: application/sdp\r\n" + extra + "Content-Length: " + strconv.Itoa(length) + "\r\n\r\n" + sdp
}

const options = "OPTIONS sip:room@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2\r\n" +
	"From: <sip:127.0.0.1>;tag=9\r\nTo: <sip:room@127.0.0.1>\r\nCall-ID: k@l\r\nCSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"

var checkTests = []struct {
	name string
	msg  string
	want string // substring of a problem; "" means none
}{
	{"good response", ok200("", -1), ""},
	{"good request", options, ""},
	{"duplicate Content-Type", ok200("Content-Type: application/sdp\r\n", -1), "content-type appears 2 times"},
	{"duplicate Call-ID in compact form", ok200("i: z@y\r\n", -1), "call-id appears 2 times"},
	{"Content-Length too long", ok200("", len(sdp)+10), "but the body has"},
	{"Content-Length too short", ok200("", len(sdp)-10), "but the body has"},
	{"Content-Length missing", strings.Replace(options, "Content-Length: 0\r\n", "", 1), "Content-Length missing"},
	{"body without Content-Type", strings.Replace(ok200("", -1), "Content-Type: application/sdp\r\n", "", 1), "without Content-Type"},
	{"Content-Type without body", strings.Replace(options, "Max-Forwards", "Content-Type: application/sdp\r\nMax-Forwards", 1), "without a body"},
	{"request without Max-Forwards", strings.Replace(options, "Max-Forwards: 70\r\n", "", 1), "max-forwards missing"},
	{"CSeq of another method", strings.Replace(options, "7 OPTIONS", "7 INVITE", 1), "does not match"},
	{"bare LF", strings.Replace(options, "Max-Forwards: 70\r\n", "Max-Forwards: 70\nX: 1\r\n", 1), "bare CR or LF"},
	{"header without colon", strings.Replace(options, "Max-Forwards: 70", "Max-Forwards 70", 1), "without a name and colon"},
	{"bad status line", strings.Replace(ok200("", -1), "SIP/2.0 200 OK", "SIP/2.0 2000 OK", 1), "bad Status-Line"},
	{"no end of headers", "OPTIONS sip:x SIP/2.0\r\nVia: x\r\n", "no CRLF CRLF"},
}

func TestCheck(t *testing.T) {
	for _, tt := range checkTests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check([]byte(tt.msg))
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("problems in a good message: %q", got)
				}
				return
			}
			if !strings.Contains(strings.Join(got, "\n"), tt.want) {
				t.Fatalf("got %q, want a problem with %q", got, tt.want)
			}
		})
	}
}

func FuzzCheck(f *testing.F) {
	for _, tt := range checkTests {
		f.Add([]byte(tt.msg))
	}
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte(" \r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if got := Check(msg); len(got) > MaxProblems {
			t.Fatalf("%d problems", len(got))
		}
	})
}

// TestTshark: tshark's SIP dissector passes well-formed messages and reports broken headers;
// its verdicts line up with the messages' order.
func TestTshark(t *testing.T) {
	bin := testpeer.Require(t, "tshark")
	msgs := [][]byte{
		[]byte(ok200("", -1)),
		[]byte(strings.Replace(options, "Max-Forwards: 70", "Max-Forwards 70", 1)),
		[]byte(options),
		[]byte(strings.Replace(options, "\r\n\r\n", "\r\n", 1)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, err := Tshark(ctx, bin, t.TempDir(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0]) != 0 || len(got[2]) != 0 {
		t.Fatalf("problems in good messages: %v", got)
	}
	if !strings.Contains(strings.Join(got[1], " "), "no colon") || !strings.Contains(strings.Join(got[3], " "), "not terminated") {
		t.Fatalf("broken messages not reported: %v", got)
	}
}

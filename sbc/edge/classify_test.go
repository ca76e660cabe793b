package edge

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

var classifyCases = []struct {
	name string
	in   string
	want Datagram
}{
	{"request", "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n\r\n", DatagramSIP},
	{"lower-case version", "INVITE sip:a@b sip/2.0\r\n\r\n", DatagramSIP},
	{"response", "SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", DatagramSIP},
	{"extension method", "FOO sip:a@b SIP/2.0\r\n\r\n", DatagramSIP},
	{"crlf keepalive", "\r\n\r\n", DatagramKeepalive},
	{"crlf pong", "\r\n", DatagramKeepalive},
	{"nul padding", "\x00\x00\x00\x00\x00\x00\x00\x00", DatagramKeepalive},
	{"stun binding request", "\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl", DatagramSTUN},
	{"http probe", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", DatagramNotSIP},
	{"tls client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", DatagramNotSIP},
	{"no crlf", "OPTIONS sip:a@b SIP/2.0\n\n", DatagramNotSIP},
	{"cr without lf", "OPTIONS sip:a@b SIP/2.0\rX", DatagramNotSIP},
	{"one space", "OPTIONS sip:a@b\r\n\r\n", DatagramNotSIP},
	{"version with a space", "OPTIONS sip:a@b SIP /2.0\r\n\r\n", DatagramNotSIP},
	{"dns query", "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01", DatagramNotSIP},
	{"stun cookie but bad length", "\x00\x01\x00\x09\x21\x12\xa4\x42abcdefghijkl", DatagramNotSIP},
	{"three crlf", "\r\n\r\n\r\n", DatagramNotSIP},
}

func TestClassify(t *testing.T) {
	for _, tt := range classifyCases {
		if got := Classify([]byte(tt.in)); got != tt.want {
			t.Errorf("%s: Classify = %v, want %v", tt.name, got, tt.want)
		}
	}
	msg := []byte(classifyCases[0].in)
	if a := testing.AllocsPerRun(100, func() { Classify(msg) }); a != 0 {
		t.Fatalf("Classify allocates %.1f times", a)
	}
}

// FuzzClassify checks that Classify never refuses what the SIP parser would accept: a datagram
// dropped as not SIP must be one sipgo cannot parse either.
func FuzzClassify(f *testing.F) {
	for _, tt := range classifyCases {
		f.Add([]byte(tt.in))
	}
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, b []byte) {
		k := Classify(b)
		if k != DatagramNotSIP {
			return
		}
		if msg, err := p.ParseSIP(b); err == nil {
			t.Fatalf("Classify dropped %q, which parses as %q", b, msg.String())
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	msg := []byte("INVITE sip:room1@sbc.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if Classify(msg) != DatagramSIP {
			b.Fatal("not SIP")
		}
	}
}

func TestPacketConnDropsNotSIP(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	st := &Stats{}
	c := NewPacketConn(pc, nil, Limits{MaxMessageSize: 4096}, st)
	var told []string
	var from netip.AddrPort
	c.OnNotSIP(func(src netip.AddrPort, head []byte) { told, from = append(told, string(head)), src })
	tx, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for _, d := range []string{
		"GET / HTTP/1.1\r\n\r\n",
		"\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl",
		"OPTIONS sip:a@b SIP/2.0\r\n\r\n",
	} {
		if _, err := tx.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "OPTIONS sip:a@b SIP/2.0\r\n\r\n" {
		t.Fatalf("read %q, want the SIP datagram", got)
	}
	if st.DroppedNotSIP.Load() != 1 || st.DroppedSTUN.Load() != 1 {
		t.Fatalf("not SIP %d, STUN %d; want 1 and 1", st.DroppedNotSIP.Load(), st.DroppedSTUN.Load())
	}
	if len(told) != 1 || told[0] != "GET / HTTP/1.1\r\n\r\n" || from != tx.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("told %q from %v", told, from)
	}
}

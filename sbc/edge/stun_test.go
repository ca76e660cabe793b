package edge

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v2"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// TestBindingResponse checks the keepalive answer against pion/stun's decoder, for IPv4 and
// IPv6 senders, and that what is not a Binding request gets none.
func TestBindingResponse(t *testing.T) {
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewSoftware("room"), stun.Fingerprint)
	for _, src := range []string{"192.0.2.7:5060", "[2001:db8::7]:40000", "[::ffff:198.51.100.1]:1"} {
		t.Run(src, func(t *testing.T) {
			ap := netip.MustParseAddrPort(src)
			var dst [stunResponseMax]byte
			n := BindingResponse(dst[:], req.Raw, ap)
			if n == 0 {
				t.Fatal("no response")
			}
			res := &stun.Message{Raw: append([]byte(nil), dst[:n]...)}
			if err := res.Decode(); err != nil {
				t.Fatal(err)
			}
			if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
				t.Fatalf("type %s transaction %x", res.Type, res.TransactionID)
			}
			var xa stun.XORMappedAddress
			if err := xa.GetFrom(res); err != nil {
				t.Fatal(err)
			}
			want := ap.Addr().Unmap()
			if got, _ := netip.AddrFromSlice(xa.IP); got.Unmap() != want || xa.Port != int(ap.Port()) {
				t.Fatalf("XOR-MAPPED-ADDRESS %s:%d, want %s", xa.IP, xa.Port, ap)
			}
		})
	}
	src := netip.MustParseAddrPort("192.0.2.7:5060")
	for name, in := range map[string][]byte{
		"binding success":       stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw,
		"binding indication":    stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication)).Raw,
		"allocate request":      stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)).Raw,
		"overrunning attribute": append([]byte("\x00\x01\x00\x04\x21\x12\xa4\x42abcdefghijkl"), 0x80, 0x22, 0x00, 0x09),
		"sip":                   []byte("OPTIONS sip:a@b SIP/2.0\r\n\r\n"),
	} {
		var dst [stunResponseMax]byte
		if n := BindingResponse(dst[:], in, src); n != 0 {
			t.Errorf("%s: answered (%d bytes)", name, n)
		}
	}
}

// TestPacketConnAnswersSTUN: the wrapped SIP socket answers a Binding request itself and never
// hands it to the SIP stack.
func TestPacketConnAnswersSTUN(t *testing.T) {
	lc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	st := &Stats{}
	c := NewPacketConn(lc, nil, Limits{MaxMessageSize: 4096}, st)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			t.Error("a STUN request reached the SIP stack")
		}
	}()
	peer, err := net.DialUDP("udp4", nil, lc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := peer.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := peer.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
		t.Fatalf("%v %v", res, err)
	}
	// The answer is counted once its write returned, which may be after the peer read it.
	testutil.Eventually(t, "the answer counted", func() bool { return st.STUNAnswered.Load() >= 1 })
	if st.STUNAnswered.Load() != 1 {
		t.Fatalf("answered %d", st.STUNAnswered.Load())
	}
}

// FuzzBindingResponse: any input gives either no answer or a response that decodes, never a
// crash or a write past 44 bytes.
func FuzzBindingResponse(f *testing.F) {
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw, true)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("a:b"), stun.Fingerprint).Raw, false)
	f.Add([]byte("\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl"), true)
	f.Add([]byte("\x00\x01\x00\x08\x21\x12\xa4\x42abcdefghijkl\x80\x28\x00\x04"), false)
	f.Fuzz(func(t *testing.T, in []byte, v6 bool) {
		src := netip.MustParseAddrPort("192.0.2.1:5060")
		if v6 {
			src = netip.MustParseAddrPort("[2001:db8::1]:5060")
		}
		dst := make([]byte, stunResponseMax)
		n := BindingResponse(dst, in, src)
		if n == 0 {
			return
		}
		res := &stun.Message{Raw: dst[:n]}
		if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
			t.Fatalf("bad response to %x: %v", in, err)
		}
	})
}

// BenchmarkBindingResponse: answering a keepalive allocates nothing.
func BenchmarkBindingResponse(b *testing.B) {
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw
	src := netip.MustParseAddrPort("[2001:db8::7]:40000")
	var dst [stunResponseMax]byte
	b.ReportAllocs()
	for b.Loop() {
		if BindingResponse(dst[:], req, src) == 0 {
			b.Fatal("no response")
		}
	}
}

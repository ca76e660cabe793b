package fastpath

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// frame builds an Ethernet/IPv4/UDP frame as lo delivers it.
func frame(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 14+20+8+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:20]))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	return b
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

const tcActUnspec = 0xffffffff // TC_ACT_UNSPEC (-1): TCX_NEXT, the stack goes on

// FuzzProgram runs the BPF program in the kernel (BPF_PROG_TEST_RUN) on
// arbitrary frames with one entry installed. Whatever the bytes, a frame that
// is not IPv4/UDP from the latched peer to the relay socket comes out
// unchanged and passed on; a matching one is passed on or redirected with a
// valid IP header checksum.
func FuzzProgram(f *testing.F) {
	peer := netip.MustParseAddrPort("127.0.0.2:40000")
	relay := netip.MustParseAddrPort("127.0.0.1:20000")
	rtpHdr := []byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44}
	f.Add(frame(peer, relay, append(rtpHdr, make([]byte, 160)...)))
	f.Add(frame(peer, relay, []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 0, 0, 0, 0}))            // RTCP
	f.Add(frame(peer, relay, []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}))     // DTLS
	f.Add(frame(netip.MustParseAddrPort("127.0.0.9:40000"), relay, append(rtpHdr, 1, 2))) // stranger
	f.Add(frame(peer, relay, rtpHdr[:5]))                                                 // short
	f.Add([]byte{})
	f.Add(make([]byte, 14))
	fp, err := Open([]string{"lo"})
	if err != nil {
		f.Skipf("SKIPPED LOUDLY: kernel fast path not available: %v", err)
	}
	defer fp.Close()
	m := Match{Src: peer, Relay: relay}
	if err := fp.Install(Entry{Match: m, Via: netip.MustParseAddrPort("127.0.0.1:20002"), Dst: netip.MustParseAddrPort("127.0.0.3:41000")}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 14 || len(data) > 1500 {
			return // the kernel refuses test runs shorter than an Ethernet header
		}
		out := make([]byte, len(data)+256)
		ret, err := fp.objs.FpIngress.Run(&ebpf.RunOptions{Data: data, DataOut: out})
		if err != nil {
			t.Skipf("test run refused: %v", err)
		}
		out = out[:len(data)]
		matches := len(data) >= 14+20+8+2 && binary.BigEndian.Uint16(data[12:]) == 0x0800 &&
			data[14] == 0x45 && data[14+9] == 17 &&
			bytes.Equal(data[14+12:14+16], []byte{127, 0, 0, 2}) &&
			(bytes.Equal(data[14+16:14+20], []byte{127, 0, 0, 1}) || bytes.Equal(data[14+16:14+20], []byte{0, 0, 0, 0})) &&
			binary.BigEndian.Uint16(data[34:]) == 40000 && binary.BigEndian.Uint16(data[36:]) == 20000
		if !matches {
			if ret != tcActUnspec || !bytes.Equal(out, data) {
				t.Fatalf("non-matching frame: ret %d, changed %v", int32(ret), !bytes.Equal(out, data))
			}
			return
		}
		if ret != tcActUnspec && ret != 7 { // TC_ACT_REDIRECT
			t.Fatalf("matching frame: ret %d", int32(ret))
		}
		if !bytes.Equal(out, data) && ipChecksum(out[14:34]) != 0 && ipChecksum(data[14:34]) == 0 {
			t.Fatalf("rewritten frame has a bad IP checksum: % x", out[14:34])
		}
	})
}

// udpChecksum computes the UDP checksum of an IPv4 packet (ip header at 0).
func udpChecksum(ip []byte) uint16 {
	udp := ip[20:]
	ps := make([]byte, 0, 12+len(udp)+1)
	ps = append(ps, ip[12:20]...)
	ps = append(ps, 0, 17)
	ps = binary.BigEndian.AppendUint16(ps, uint16(len(udp)))
	ps = append(ps, udp...)
	ps[12+6], ps[12+7] = 0, 0
	if len(ps)%2 == 1 {
		ps = append(ps, 0)
	}
	c := ipChecksum(ps)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// TestProgramRewrite runs the program on a matching frame with a real UDP
// checksum: addresses, ports and both checksums come out as the relay would
// have sent the datagram.
func TestProgramRewrite(t *testing.T) {
	fp := openLo(t)
	peer, relay := netip.MustParseAddrPort("127.0.0.2:40000"), netip.MustParseAddrPort("127.0.0.1:20000")
	via, dst := netip.MustParseAddrPort("127.0.0.1:20002"), netip.MustParseAddrPort("127.0.0.3:41000")
	if err := fp.Install(Entry{Match: Match{Src: peer, Relay: relay}, Via: via, Dst: dst}); err != nil {
		t.Fatal(err)
	}
	payload := append([]byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44}, bytes.Repeat([]byte{0xd5}, 160)...)
	in := frame(peer, relay, payload)
	binary.BigEndian.PutUint16(in[14+20+6:], udpChecksum(in[14:]))
	out := make([]byte, len(in)+64)
	ret, err := fp.objs.FpIngress.Run(&ebpf.RunOptions{Data: in, DataOut: out})
	if err != nil {
		t.Fatal(err)
	}
	out = out[:len(in)]
	want := frame(via, dst, payload)
	binary.BigEndian.PutUint16(want[14+20+6:], udpChecksum(want[14:]))
	if ret != tcActUnspec || !bytes.Equal(out, want) {
		t.Fatalf("ret %d\n got % x\nwant % x", int32(ret), out[:42], want[:42])
	}
	if c, _ := fp.Counters(Match{Src: peer, Relay: relay}); c != (Counters{Packets: 1, Bytes: uint64(len(payload))}) {
		t.Fatalf("counters %+v", c)
	}
}

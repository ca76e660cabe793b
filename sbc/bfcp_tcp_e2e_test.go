package sbc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/sdp"
)

// BFCP primitives used by the test peers (RFC 8855 section 5.1).
const (
	bfcpHello    = 11
	bfcpHelloAck = 12
)

// bfcpFrame builds a BFCP message over a reliable transport: the 12-byte common header (version
// 1, primitive, payload length in 4-byte units, conference, transaction and user ids) and the
// attributes, each padded to 4 bytes. A HelloAck carries SUPPORTED-PRIMITIVES (21) and
// SUPPORTED-ATTRIBUTES (20), as a floor control server sends it.
func bfcpFrame(prim uint8, conf uint32, tid, user uint16) []byte {
	var payload []byte
	if prim == bfcpHelloAck {
		attr := func(typ uint8, vals ...byte) {
			a := append([]byte{typ<<1 | 1, byte(2 + len(vals))}, vals...)
			for len(a)%4 != 0 {
				a = append(a, 0)
			}
			payload = append(payload, a...)
		}
		attr(21, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)
		attr(20, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42)
	}
	h := make([]byte, 12, 12+len(payload))
	h[0] = 1 << 5 // version 1 (reliable transport), R=0, F=0
	h[1] = prim
	binary.BigEndian.PutUint16(h[2:], uint16(len(payload)/4))
	binary.BigEndian.PutUint32(h[4:], conf)
	binary.BigEndian.PutUint16(h[8:], tid)
	binary.BigEndian.PutUint16(h[10:], user)
	return append(h, payload...)
}

// readBFCP reads one framed BFCP message from c and returns its primitive and size.
func readBFCP(c net.Conn, within time.Duration) (prim uint8, frame []byte, err error) {
	_ = c.SetReadDeadline(time.Now().Add(within))
	h := make([]byte, 12)
	if _, err := io.ReadFull(c, h); err != nil {
		return 0, nil, err
	}
	if h[0]>>5 != 1 {
		return 0, nil, fmt.Errorf("BFCP version %d", h[0]>>5)
	}
	body := make([]byte, 4*int(binary.BigEndian.Uint16(h[2:])))
	if _, err := io.ReadFull(c, body); err != nil {
		return 0, nil, err
	}
	return h[1], append(h, body...), nil
}

// bfcpSDP is a Poly-style offer or answer: audio plus a TCP/BFCP (or TCP/TLS/BFCP) floor control
// m-line with a=setup, a=connection and the RFC 8856 attributes.
func bfcpSDP(audioPort, bfcpPort int, proto, setup, floorctrl string) string {
	return "v=0\r\no=GroupSeries 1727431925 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		fmt.Sprintf("m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", audioPort) +
		fmt.Sprintf("m=application %d %s *\r\na=floorctrl:%s\r\na=confid:1\r\na=userid:2\r\na=floorid:1 mstrm:3\r\na=setup:%s\r\na=connection:new\r\n",
			bfcpPort, proto, floorctrl, setup)
}

// bfcpTarget returns the relay address of the BFCP m-line (index 1) and its a=setup value.
func bfcpTarget(t *testing.T, body []byte) (netip.AddrPort, string) {
	t.Helper()
	s, err := sdp.Parse(body)
	if err != nil || len(s.Media) != 2 {
		t.Fatalf("SDP %v:\n%s", err, body)
	}
	setup := ""
	for _, l := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(l, "a=setup:"); ok {
			setup = v
		}
	}
	return s.Media[1].RTPAddr(), setup
}

// TestBFCPOverTCPThroughRelay: a Poly-style call whose content-sharing floor control is BFCP over
// TCP (m=application 5070 TCP/BFCP *, a=setup:actpass). The relay takes the passive role toward
// both legs: the room is offered a=setup:passive, the caller is answered a=setup:passive, and
// both connect TCP to the relay ports they were given (the room before it even answers). BFCP
// Hello/HelloAck cross both ways, bytes are counted in the call's stream stats, a stranger on
// another address is refused, and BYE closes both connections and the listeners.
func TestBFCPOverTCPThroughRelay(t *testing.T) {
	n := startNode(t, callConfig(t))
	callerAudio, roomAudio := newEndpoint(t, 1), newEndpoint(t, 1)
	audioPort := func(e *endpoint) int { return e.socks[0].LocalAddr().(*net.UDPAddr).Port }

	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	roomConn := make(chan net.Conn, 1)
	roomErr := make(chan error, 1)
	var roomSide netip.AddrPort // the relay address the room was offered
	room.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		dst, setup := bfcpTarget(t, req.Body())
		roomSide = dst
		if setup != "passive" || dst.Port() == 0 || dst.Port() == 5070 {
			roomErr <- fmt.Errorf("room was offered BFCP at %v with a=setup:%s:\n%s", dst, setup, req.Body())
			room.answer(req, tx, bfcpSDP(audioPort(roomAudio), 0, "TCP/BFCP", "active", "s-only"))
			return
		}
		// The room is active (it answers a=setup:active) and connects at once, before its answer
		// has reached the relay, as a fast endpoint does.
		c, err := net.DialTimeout("tcp", dst.String(), 3*time.Second)
		if err != nil {
			roomErr <- err
		} else {
			roomConn <- c
		}
		room.answer(req, tx, bfcpSDP(audioPort(roomAudio), 9, "TCP/BFCP", "active", "s-only"))
	})
	caller := newTestUA(t, "caller")
	call := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example",
		bfcpSDP(audioPort(callerAudio), 5070, "TCP/BFCP", "actpass", "c-s"), nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	var rc net.Conn
	select {
	case err := <-roomErr:
		t.Fatal(err)
	case rc = <-roomConn:
	case <-time.After(5 * time.Second):
		t.Fatal("the room never connected")
	}
	defer rc.Close()
	dst, setup := bfcpTarget(t, call.final.Body())
	if setup != "passive" || dst.Port() == 0 {
		t.Fatalf("caller was answered BFCP at %v with a=setup:%s:\n%s", dst, setup, call.final.Body())
	}
	cc, err := net.DialTimeout("tcp", dst.String(), 3*time.Second)
	if err != nil {
		t.Fatalf("caller cannot connect to the relay: %v", err)
	}
	defer cc.Close()

	// A stranger on another address connects to both relay ports and is refused.
	for _, to := range []netip.AddrPort{dst, roomSide} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 66)}, Timeout: 3 * time.Second}
		sc, err := d.Dial("tcp", to.String())
		if err != nil {
			continue // refused outright is fine too
		}
		_, _ = sc.Write(bfcpFrame(bfcpHello, 666, 666, 666))
		_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := sc.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("stranger's connection to %v still open (read %d, %v)", to, n, err)
		}
		sc.Close()
	}

	// Hello / HelloAck, caller (client) to room (server) and back, then the other way.
	exchange := func(from, to net.Conn, conf uint32, tid uint16) {
		t.Helper()
		hello := bfcpFrame(bfcpHello, conf, tid, 2)
		if _, err := from.Write(hello); err != nil {
			t.Fatal(err)
		}
		prim, got, err := readBFCP(to, 5*time.Second)
		if err != nil || prim != bfcpHello || !bytes.Equal(got, hello) {
			t.Fatalf("Hello: prim %d err %v got % x", prim, err, got)
		}
		ack := bfcpFrame(bfcpHelloAck, conf, tid, 2)
		if _, err := to.Write(ack); err != nil {
			t.Fatal(err)
		}
		prim, got, err = readBFCP(from, 5*time.Second)
		if err != nil || prim != bfcpHelloAck || !bytes.Equal(got, ack) {
			t.Fatalf("HelloAck: prim %d err %v got % x", prim, err, got)
		}
	}
	exchange(cc, rc, 1, 1)
	exchange(rc, cc, 1, 2)
	frameBytes := uint64(len(bfcpFrame(bfcpHello, 1, 1, 2)) + len(bfcpFrame(bfcpHelloAck, 1, 1, 2)))

	var id string
	for _, c := range n.calls.Calls() {
		id = c.ID
	}
	v, _ := n.calls.MediaStats(id)
	streams := v.([]media.StreamStats)
	if len(streams) != 2 || streams[1].Proto != "TCP/BFCP" {
		t.Fatalf("streams: %+v", streams)
	}
	st := streams[1]
	if st.AToB.Bytes != frameBytes || st.BToA.Bytes != frameBytes || st.AToB.Dropped+st.BToA.Dropped < 2 {
		t.Fatalf("BFCP stream stats %+v, want %d bytes each way and the stranger counted", st.Stats, frameBytes)
	}
	if ms := n.media.Stats(); ms.Bytes < 2*frameBytes || ms.Dropped < 2 {
		t.Fatalf("manager stats %+v", ms)
	}

	// BYE closes both connections and the relay's listeners.
	if res := call.do(sip.BYE, ""); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	waitFor(t, func() bool { return n.calls.Active() == 0 })
	for name, c := range map[string]net.Conn{"caller": cc, "room": rc} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s's BFCP connection survived BYE: %v", name, err)
		}
	}
	if c, err := net.DialTimeout("tcp", dst.String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the relay still accepts on the BFCP port after BYE")
	}
}

package sbc

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/pion/stun/v2"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// streamRoom is a room system on one TCP or TLS connection it dialled itself, speaking SIP
// as written (no SIP stack: nothing it does can open a second connection). It also listens at
// the address its Contact names and counts what connects there: a node that dials the Contact
// instead of using the registered flow is caught (behind NAT that address is unreachable).
type streamRoom struct {
	t         *testing.T
	transport string // TCP or TLS
	conn      net.Conn
	contact   string // host:port of the Contact listener
	contactLn net.Listener
	dialled   atomic.Int64 // connections accepted at the Contact address
	msgs      chan sip.Message
	pongs     chan struct{}
	closed    chan struct{}
}

func dialStreamRoom(t *testing.T, n *Node, transport string) *streamRoom {
	t.Helper()
	return dialStreamRoomAt(t, n.addr(t, strings.ToLower(transport)), transport)
}

// dialStreamRoomAt is dialStreamRoom to the node's listener at addr.
func dialStreamRoomAt(t *testing.T, addr, transport string) *streamRoom {
	t.Helper()
	host, _, _ := net.SplitHostPort(addr)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	r := &streamRoom{t: t, transport: transport, contact: ln.Addr().String(), contactLn: ln,
		msgs: make(chan sip.Message, 64), pongs: make(chan struct{}, 16), closed: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.dialled.Add(1)
			c.Close()
		}
	}()
	if transport == "TLS" {
		r.conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		r.conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.conn.Close(); ln.Close() })
	go r.read()
	return r
}

// read splits the stream into messages; a CRLF between messages is a keepalive pong.
func (r *streamRoom) read() {
	defer close(r.closed)
	br := bufio.NewReader(r.conn)
	for {
		b, err := br.ReadByte()
		if err != nil {
			return
		}
		if b == '\r' || b == '\n' {
			if b == '\n' {
				select {
				case r.pongs <- struct{}{}:
				default:
				}
			}
			continue
		}
		_ = br.UnreadByte()
		var head strings.Builder
		cl := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			if name, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(strings.TrimSpace(name), "Content-Length") || strings.TrimSpace(name) == "l") {
				cl, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, cl)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		m, err := sip.ParseMessage(append([]byte(head.String()), body...))
		if err != nil {
			r.t.Errorf("room: unparsable message: %v\n%s", err, head.String())
			continue
		}
		r.msgs <- m
	}
}

func (r *streamRoom) send(msg string) {
	r.t.Helper()
	if _, err := r.conn.Write([]byte(msg)); err != nil {
		r.t.Fatalf("room write: %v", err)
	}
}

// next returns the next message for which match holds.
func (r *streamRoom) next(within time.Duration, match func(sip.Message) bool) sip.Message {
	r.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-r.msgs:
			if match(m) {
				return m
			}
		case <-deadline:
			r.t.Fatalf("room: no expected message within %s", within)
			return nil
		}
	}
}

func isStatus(code int) func(sip.Message) bool {
	return func(m sip.Message) bool { res, ok := m.(*sip.Response); return ok && res.StatusCode == code }
}

func isMethod(method sip.RequestMethod) func(sip.Message) bool {
	return func(m sip.Message) bool { req, ok := m.(*sip.Request); return ok && req.Method == method }
}

// register registers the room over its connection; params go on the Contact (e.g.
// +sip.instance and reg-id for RFC 5626 flows).
func (r *streamRoom) register(n *Node, room, password, params string) {
	r.t.Helper()
	domain := n.cfg.SIP.Domain
	local := r.conn.LocalAddr().String()
	callID := randHex()
	reg := func(cseq int, auth string) string {
		return "REGISTER sip:" + domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/" + r.transport + " " + local + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + room + "@" + domain + ">;tag=r" + callID[:6] + "\r\n" +
			"To: <sip:" + room + "@" + domain + ">\r\nCall-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Supported: outbound, path\r\n" +
			"Contact: <sip:" + room + "@" + r.contact + ";transport=" + strings.ToLower(r.transport) + ">" + params + "\r\nExpires: 300\r\n" +
			auth + "Content-Length: 0\r\n\r\n"
	}
	r.send(reg(1, ""))
	res := r.next(5*time.Second, isStatus(401)).(*sip.Response)
	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		r.t.Fatal(err)
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + domain, Username: room, Password: password, Count: 1})
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(reg(2, "Authorization: "+cred.String()+"\r\n"))
	r.next(5*time.Second, isStatus(200))
}

// answerInvite waits for an INVITE and answers it 200 with SDP (addr in c=), returning it.
func (r *streamRoom) answerInvite(room, tag, sdp string) *sip.Request {
	r.t.Helper()
	inv := r.next(10*time.Second, isMethod(sip.INVITE)).(*sip.Request)
	res := sip.NewResponseFromRequest(inv, 200, "OK", []byte(sdp))
	if !res.To().Params.Has("tag") {
		res.To().Params.Add("tag", tag)
	}
	ct := sip.Uri{Scheme: "sip", User: room, Host: hostOf(r.contact), Port: portOf(r.contact), UriParams: sip.NewParams()}
	ct.UriParams.Add("transport", strings.ToLower(r.transport))
	res.AppendHeader(&sip.ContactHeader{Address: ct})
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	r.send(res.String())
	r.next(10*time.Second, isMethod(sip.ACK))
	return inv
}

// reply answers req over the connection.
func (r *streamRoom) reply(req *sip.Request, code int) {
	r.t.Helper()
	r.send(sip.NewResponseFromRequest(req, code, "OK", nil).String())
}

// bye hangs up the call of inv (an INVITE the room answered with tag) from the room's side.
func (r *streamRoom) bye(inv *sip.Request, tag string) {
	r.t.Helper()
	local := r.conn.LocalAddr().String()
	to := inv.From()
	from := inv.To()
	msg := "BYE " + inv.Contact().Address.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + r.transport + " " + local + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <" + from.Address.String() + ">;tag=" + tag + "\r\n" +
		"To: " + to.Value() + "\r\nCall-ID: " + inv.CallID().Value() + "\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n"
	r.send(msg)
	r.next(10*time.Second, isStatus(200))
}

// waitNoCalls waits until the nodes hold no call (a room with drop-in denied is busy until its
// last call is gone from the table, a moment after the BYE's 200).
func waitNoCalls(t *testing.T, nodes ...*Node) {
	t.Helper()
	waitUntil(t, 10*time.Second, "no calls left", func() bool {
		for _, n := range nodes {
			if n.calls.Active() > 0 || n.Store().State().RoomInCall("boardroom", "") {
				return false
			}
		}
		return true
	})
}

func hostOf(hp string) string { h, _, _ := net.SplitHostPort(hp); return h }
func portOf(hp string) int    { _, p, _ := net.SplitHostPort(hp); n, _ := strconv.Atoi(p); return n }

// streamRoomSDP is a room's answer with its media on addr.
func streamRoomSDP(addr string) string {
	ip := "IP4"
	if strings.Contains(addr, ":") {
		ip = "IP6"
	}
	return "v=0\r\no=room 1 1 IN " + ip + " " + addr + "\r\ns=-\r\nc=IN " + ip + " " + addr + "\r\nt=0 0\r\n" +
		"m=audio 41000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
}

// TestStreamFlowCarriesTheCall (issue 13 item 5): a room registered over TLS (and TCP) on one
// connection it dialled gets its calls, a re-INVITE and a BYE down that connection, and its own
// BYE goes up it: the node's listener accepts exactly one connection, and nothing ever
// connects to the room's Contact address (sipgo issue 361: in-dialog requests must reuse the
// flow, not dial the Contact).
func TestStreamFlowCarriesTheCall(t *testing.T) {
	for _, tr := range []string{"TLS", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			cfg := callConfig(t)
			if tr == "TLS" {
				cfg.SIP.TLS.Cert, cfg.SIP.TLS.Key = selfSigned(t, t.TempDir())
				cfg.SIP.Listen = append(cfg.SIP.Listen, config.Listen{Transport: "tls", Addr: netip.MustParseAddrPort("127.0.0.1:0")})
			}
			n := startNode(t, cfg)
			before := n.edgeStats.Accepted.Load()
			room := dialStreamRoom(t, n, tr)
			room.register(n, "boardroom", "s3cret-board", "")
			caller := newTestUA(t, "caller")

			// Call 1: the caller re-INVITEs, then hangs up.
			done := make(chan *testCall, 1)
			go func() { done <- caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil) }()
			room.answerInvite("boardroom", "roomtag1", streamRoomSDP("127.0.0.1"))
			call := <-done
			if call.final == nil || call.final.StatusCode != 200 {
				t.Fatalf("call 1: %v", call.final)
			}
			call.ack(call.final)
			reinv := make(chan *sip.Response, 1)
			go func() { reinv <- call.do(sip.INVITE, testSDP, sip.NewHeader("Content-Type", "application/sdp")) }()
			re := room.next(10*time.Second, isMethod(sip.INVITE)).(*sip.Request)
			res := sip.NewResponseFromRequest(re, 200, "OK", []byte(streamRoomSDP("127.0.0.1")))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			room.send(res.String())
			if r := <-reinv; r.StatusCode != 200 {
				t.Fatalf("re-INVITE: %d", r.StatusCode)
			}
			room.next(10*time.Second, isMethod(sip.ACK))
			byeDone := make(chan *sip.Response, 1)
			go func() { byeDone <- call.do(sip.BYE, "") }()
			room.reply(room.next(10*time.Second, isMethod(sip.BYE)).(*sip.Request), 200)
			if r := <-byeDone; r.StatusCode != 200 {
				t.Fatalf("caller's BYE: %d", r.StatusCode)
			}

			// Call 2: the room hangs up.
			waitNoCalls(t, n)
			go func() { done <- caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil) }()
			inv := room.answerInvite("boardroom", "roomtag2", streamRoomSDP("127.0.0.1"))
			call = <-done
			if call.final == nil || call.final.StatusCode != 200 {
				t.Fatalf("call 2: %v", call.final)
			}
			call.ack(call.final)
			room.bye(inv, "roomtag2")
			caller.waitRequest(sip.BYE, 10*time.Second)

			if got := n.edgeStats.Accepted.Load() - before; got != 1 {
				t.Errorf("the node's %s listener accepted %d connections, want 1", tr, got)
			}
			if got := room.dialled.Load(); got != 0 {
				t.Errorf("the node dialled the room's Contact %d times instead of using its flow", got)
			}
		})
	}
}

// TestStreamKeepalivePong (RFC 5626 section 4.4.1): a double-CRLF ping on a registered TLS or
// TCP flow is answered with a CRLF pong on that connection.
func TestStreamKeepalivePong(t *testing.T) {
	cfg := callConfig(t)
	cfg.SIP.TLS.Cert, cfg.SIP.TLS.Key = selfSigned(t, t.TempDir())
	cfg.SIP.Listen = append(cfg.SIP.Listen, config.Listen{Transport: "tls", Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	n := startNode(t, cfg)
	for _, tr := range []string{"TLS", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			room := dialStreamRoom(t, n, tr)
			room.register(n, "boardroom", "s3cret-board", "")
			for i := range 3 {
				room.send("\r\n\r\n")
				select {
				case <-room.pongs:
				case <-time.After(5 * time.Second):
					t.Fatalf("ping %d: no pong", i)
				}
			}
		})
	}
}

// TestSTUNKeepaliveAnswered (RFC 5626 section 4.4.2): STUN Binding requests on the SIP UDP port
// are answered with a Binding success response carrying the sender's XOR-MAPPED-ADDRESS; a
// stream of them (a room's keepalives) leaves no malformed event, no ban, and the source's SIP
// is still served.
func TestSTUNKeepaliveAnswered(t *testing.T) {
	n := startNode(t, callConfig(t))
	node := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(n.addr(t, "udp")))
	const src = "127.0.0.32"
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for i := range 50 {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if _, err := c.WriteToUDP(req.Raw, node); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		nr, _, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("binding request %d not answered: %v", i, err)
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:nr]...)}
		if err := res.Decode(); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
			t.Fatalf("response %d: %s, transaction %x want %x", i, res.Type, res.TransactionID, req.TransactionID)
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(res); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if want := c.LocalAddr().(*net.UDPAddr); !xa.IP.Equal(want.IP) || xa.Port != want.Port {
			t.Fatalf("XOR-MAPPED-ADDRESS %s:%d, want %s", xa.IP, xa.Port, want)
		}
	}
	if got := sipRequestFrom(t, c, node, "OPTIONS"); !strings.HasPrefix(got, "SIP/2.0 200") {
		t.Fatalf("OPTIONS after the keepalives: %q", got)
	}
	if evs := events(n, src, ""); len(evs) != 0 {
		t.Fatalf("keepalives left events: %s", ruleSummary(evs))
	}
	if _, banned := banOf(n, src); banned {
		t.Fatal("keepalives banned their source")
	}
	if s := &n.edgeStats; s.STUNAnswered.Load() != 50 || s.DroppedNotSIP.Load() != 0 {
		t.Fatalf("edge counters: STUN answered %d, not SIP %d", s.STUNAnswered.Load(), s.DroppedNotSIP.Load())
	}
}

// sipRequestFrom sends a raw out-of-dialog request from c and returns the answer's first line.
func sipRequestFrom(t *testing.T, c *net.UDPConn, to *net.UDPAddr, method string) string {
	t.Helper()
	local := c.LocalAddr().String()
	msg := method + " sip:video.test SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@video.test>;tag=" + randHex()[:8] + "\r\nTo: <sip:video.test>\r\n" +
		"Call-ID: " + randHex() + "\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.WriteToUDP([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		nr, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return ""
		}
		if line, _, _ := strings.Cut(string(buf[:nr]), "\r\n"); strings.HasPrefix(line, "SIP/2.0") && !strings.HasPrefix(line, "SIP/2.0 1") {
			return line
		}
	}
}

// TestOutboundFlowFailover (RFC 5626, issue 15): a room that registers one UA instance over two
// TCP flows (reg-id 1 and 2, same Contact) keeps both; a call goes down one flow only (the
// newest), never both; when that flow's socket closes, the next call reaches the room over
// the other.
func TestOutboundFlowFailover(t *testing.T) {
	n := startNode(t, callConfig(t))
	const inst = `;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"`
	older := dialStreamRoom(t, n, "TCP")
	older.register(n, "boardroom", "s3cret-board", inst+";reg-id=1")
	newer := dialStreamRoom(t, n, "TCP")
	newer.contact = older.contact // one UA, one Contact, two flows
	newer.register(n, "boardroom", "s3cret-board", inst+";reg-id=2")
	if bs := n.reg.Bindings("boardroom"); len(bs) != 2 {
		t.Fatalf("want a binding per flow, got %+v", bs)
	}
	caller := newTestUA(t, "caller")
	call := func(room *streamRoom, tag string) (*testCall, *sip.Request) {
		t.Helper()
		done := make(chan *testCall, 1)
		go func() { done <- caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil) }()
		inv := room.answerInvite("boardroom", tag, streamRoomSDP("127.0.0.1"))
		c := <-done
		if c.final == nil || c.final.StatusCode != 200 {
			t.Fatalf("call: %v", c.final)
		}
		c.ack(c.final)
		return c, inv
	}
	c1, inv1 := call(newer, "flow2")
	byeDone := make(chan *sip.Response, 1)
	go func() { byeDone <- c1.do(sip.BYE, "") }()
	newer.reply(newer.next(10*time.Second, isMethod(sip.BYE)).(*sip.Request), 200)
	<-byeDone

	newer.conn.Close()
	waitNoCalls(t, n)
	_, inv2 := call(older, "flow1")
	if inv2.CallID().Value() == inv1.CallID().Value() {
		t.Fatal("call 1 was forked to both flows of the instance")
	}
	if older.dialled.Load() != 0 {
		t.Fatal("the node dialled the room's Contact")
	}
}

// requireIPv6Loopback skips, loudly, where the host has no ::1.
func requireIPv6Loopback(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		if os.Getenv("PORTCULLIS_CI") == "1" {
			t.Fatalf("no IPv6 loopback on this host: %v", err)
		}
		t.Skipf("SKIPPED: no IPv6 loopback (::1) on this host: %v", err)
	}
	l.Close()
}

// boundOf is the node's first listener of transport in the family of v6.
func boundOf(t *testing.T, n *Node, transport string, v6 bool) string {
	t.Helper()
	for _, b := range n.Bound() {
		if b.Transport == transport && b.Addr.Addr().Is6() == v6 {
			return b.Addr.String()
		}
	}
	t.Fatalf("no %s listener (IPv6 %v)", transport, v6)
	return ""
}

// dualStackConfig is a node on 127.0.0.1 and [::1], its relay on both families.
func dualStackConfig(t *testing.T) config.Config {
	cfg := callConfig(t)
	v4, v6 := netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("[::1]:0")
	cfg.SIP.Listen = []config.Listen{{Transport: "udp", Addr: v4}, {Transport: "tcp", Addr: v4},
		{Transport: "udp", Addr: v6}, {Transport: "tcp", Addr: v6}}
	cfg.Media.Bind = netip.MustParseAddr("::")
	cfg.Media.Advertise = netip.MustParseAddr("127.0.0.1")
	cfg.Media.Advertise6 = netip.MustParseAddr("::1")
	cfg.Media.AllowPeers = append(cfg.Media.AllowPeers, netip.MustParsePrefix("::1/128"))
	return cfg
}

// rtpSocket is a media endpoint: a UDP socket on host.
func rtpSocket(t *testing.T, host string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sdpFor(c *net.UDPConn) string {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	ip, fam := ap.Addr().Unmap().String(), "IP4"
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		fam = "IP6"
	}
	return "v=0\r\no=ep 1 1 IN " + fam + " " + ip + "\r\ns=-\r\nc=IN " + fam + " " + ip + "\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(int(ap.Port())) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
}

// relayOf is the relay address:port in an SDP body (c= and the first m=).
func relayOf(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	var addr netip.Addr
	port := 0
	for _, l := range strings.Split(string(body), "\r\n") {
		if f := strings.Fields(l); strings.HasPrefix(l, "c=IN ") && len(f) == 3 {
			addr, _ = netip.ParseAddr(f[2])
		}
		if f := strings.Fields(l); strings.HasPrefix(l, "m=") && port == 0 && len(f) > 1 {
			port, _ = strconv.Atoi(f[1])
		}
	}
	if !addr.IsValid() || port == 0 {
		t.Fatalf("no relay address in\n%s", body)
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

// rtpReaches sends RTP from 'from' to relay until 'to' receives some (within a deadline).
func rtpReaches(t *testing.T, from *net.UDPConn, relay netip.AddrPort, to *net.UDPConn) {
	t.Helper()
	pkt := make([]byte, 172)
	pkt[0], pkt[1] = 0x80, 0
	got := make(chan struct{})
	go func() {
		buf := make([]byte, 1500)
		_ = to.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := to.ReadFromUDP(buf); err == nil {
			close(got)
		}
	}()
	deadline := time.After(10 * time.Second)
	for seq := 0; ; seq++ {
		pkt[3] = byte(seq)
		_, _ = from.WriteToUDPAddrPort(pkt, relay)
		select {
		case <-got:
			return
		case <-deadline:
			t.Fatalf("RTP from %s via %s never reached %s", from.LocalAddr(), relay, to.LocalAddr())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestIPv6RoomMixedCall (issue 13 item 7): a room registered over IPv6 ([::1], TCP) is called
// by an IPv4 caller: each leg gets an SDP of its own family (c=IN IP6 ::1 to the room, c=IN IP4
// to the caller), the room is given an IPv6 Contact, media flows both ways through the
// dual-stack relay, and the room's BYE ends the call.
func TestIPv6RoomMixedCall(t *testing.T) {
	requireIPv6Loopback(t)
	n := startNode(t, dualStackConfig(t))
	room := dialStreamRoomAt(t, boundOf(t, n, "tcp", true), "TCP")
	room.register(n, "boardroom", "s3cret-board", "")
	roomRTP, callerRTP := rtpSocket(t, "::1"), rtpSocket(t, "127.0.0.1")
	caller := newTestUA(t, "caller")
	done := make(chan *testCall, 1)
	go func() {
		done <- caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", sdpFor(callerRTP), nil)
	}()
	inv := room.answerInvite("boardroom", "v6room", sdpFor(roomRTP))
	call := <-done
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	if b := string(inv.Body()); !strings.Contains(b, "c=IN IP6 ::1\r\n") || strings.Contains(b, "IP4") {
		t.Errorf("the IPv6 room was offered\n%s", b)
	}
	if b := string(call.final.Body()); !strings.Contains(b, "c=IN IP4 127.0.0.1\r\n") || strings.Contains(b, "IP6") {
		t.Errorf("the IPv4 caller was answered\n%s", b)
	}
	if h := inv.Contact().Address.Host; !strings.Contains(h, ":") {
		t.Errorf("the IPv6 room was given Contact host %q", h)
	}
	rtpReaches(t, callerRTP, relayOf(t, call.final.Body()), roomRTP)
	rtpReaches(t, roomRTP, relayOf(t, inv.Body()), callerRTP)
	room.bye(inv, "v6room")
	caller.waitRequest(sip.BYE, 10*time.Second)
}

// TestIPv6RoomOverUDP (issue 13 item 7): a room registered over UDP on [::1] is called by an
// IPv4 caller (the INVITE leaves from the node's IPv6 listener, which is in its Via and
// Contact, with an IPv6 c= line) and calls an IPv4 room itself (its answer names the node's
// IPv6 address, so its ACK and BYE reach the node); both calls end with a BYE.
func TestIPv6RoomOverUDP(t *testing.T) {
	requireIPv6Loopback(t)
	n := startNode(t, dualStackConfig(t))
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	room := newTestUAOn(t, "room6", "::1", port)
	room.node = boundOf(t, n, "udp", true)
	room.register(n, "boardroom", "s3cret-board")
	roomRTP := rtpSocket(t, "::1")
	var inv *sip.Request
	room.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		room.mu.Lock()
		inv = req
		room.mu.Unlock()
		room.answer(req, tx, sdpFor(roomRTP))
	})
	caller := newTestUA(t, "caller")
	callerRTP := rtpSocket(t, "127.0.0.1")
	call := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", sdpFor(callerRTP), nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("v4 caller -> v6 room: %v", call.final)
	}
	call.ack(call.final)
	room.mu.Lock()
	got := inv
	room.mu.Unlock()
	if b := string(got.Body()); !strings.Contains(b, "c=IN IP6 ::1\r\n") {
		t.Errorf("the IPv6 room was offered\n%s", b)
	}
	if via := got.Via(); strings.Trim(via.Host, "[]") != "::1" || via.Port != portOf(room.node) {
		t.Errorf("INVITE to the IPv6 room has Via %s", via.Value())
	}
	if ct := got.Contact().Address; strings.Trim(ct.Host, "[]") != "::1" || ct.Port != portOf(room.node) {
		t.Errorf("INVITE to the IPv6 room has Contact %s", ct.String())
	}
	rtpReaches(t, callerRTP, relayOf(t, call.final.Body()), roomRTP)
	rtpReaches(t, roomRTP, relayOf(t, got.Body()), callerRTP)
	if res := call.do(sip.BYE, ""); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	room.waitRequest(sip.BYE, 10*time.Second)

	// The IPv6 room calls the IPv4 room2.
	waitNoCalls(t, n)
	room2 := newTestUA(t, "room2")
	room2.register(n, "room2", "room2-pass")
	out := room.invite(n, roomURI(n, "room2"), "boardroom", n.cfg.SIP.Domain, sdpFor(roomRTP),
		&sipgo.DigestAuth{Username: "boardroom", Password: "s3cret-board"})
	if out.final == nil || out.final.StatusCode != 200 {
		t.Fatalf("v6 room -> v4 room: %v", out.final)
	}
	if ct := out.final.Contact().Address; strings.Trim(ct.Host, "[]") != "::1" {
		t.Errorf("the IPv6 caller was answered with Contact %s", ct.String())
	}
	if b := string(out.final.Body()); !strings.Contains(b, "c=IN IP6 ::1\r\n") {
		t.Errorf("the IPv6 caller was answered\n%s", b)
	}
	out.ack(out.final)
	if res := out.do(sip.BYE, ""); res.StatusCode != 200 {
		t.Fatalf("BYE from the IPv6 room: %d", res.StatusCode)
	}
	room2.waitRequest(sip.BYE, 10*time.Second)
}

// TestOutboundFlowFailoverSilent (RFC 5626 section 5.3, issue 15): when the flow a call goes
// down is open but dead (the INVITE is written and nothing comes back, not even 100), the call
// moves to the instance's other flow after the target timeout (4 s) and is answered there.
func TestOutboundFlowFailoverSilent(t *testing.T) {
	cfg := callConfig(t)
	cfg.Calls.RingTimeout = config.Duration(30 * time.Second)
	n := startNode(t, cfg)
	const inst = `;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf7>"`
	older := dialStreamRoom(t, n, "TCP")
	older.register(n, "boardroom", "s3cret-board", inst+";reg-id=1")
	dead := dialStreamRoom(t, n, "TCP")
	dead.contact = older.contact
	dead.register(n, "boardroom", "s3cret-board", inst+";reg-id=2")
	caller := newTestUA(t, "caller")
	caller.timeout = 30 * time.Second
	done := make(chan *testCall, 1)
	go func() { done <- caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil) }()
	dead.next(10*time.Second, isMethod(sip.INVITE)) // written down the dead flow, never answered
	older.answerInvite("boardroom", "flow1", streamRoomSDP("127.0.0.1"))
	call := <-done
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
}

// TestOutboundFlowsOnTwoNodes (RFC 5626, issue 15): one UA instance registers a flow through
// edge1 (reg-id 1) and one through edge2 (reg-id 2); a caller on edge3 reaches it over the
// newest flow (edge2); when that flow's socket closes, edge2 cannot deliver and the call moves
// to the flow on edge1; when edge2 itself is gone, calls still reach the room through edge1.
func TestOutboundFlowsOnTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	nodes := startCluster(t, callConfig)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	const inst = `;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf8>"`
	flow1 := dialStreamRoom(t, n1, "TCP")
	flow1.register(n1, "boardroom", "s3cret-board", inst+";reg-id=1")
	flow2 := dialStreamRoom(t, n2, "TCP")
	flow2.contact = flow1.contact
	flow2.register(n2, "boardroom", "s3cret-board", inst+";reg-id=2")
	waitUntil(t, 10*time.Second, "both flows visible on edge3", func() bool {
		bs := n3.Store().State().Bindings("boardroom", time.Now())
		return len(bs) == 2 && bs[0].Node != bs[1].Node
	})
	caller := newTestUA(t, "caller")
	call := func(room *streamRoom, tag string) {
		t.Helper()
		done := make(chan *testCall, 1)
		go func() {
			done <- caller.invite(n3, roomURI(n3, "boardroom"), "visitor", "outside.example", testSDP, nil)
		}()
		room.answerInvite("boardroom", tag, streamRoomSDP("127.0.0.1"))
		c := <-done
		if c.final == nil || c.final.StatusCode != 200 {
			t.Fatalf("call: %v", c.final)
		}
		c.ack(c.final)
		byeDone := make(chan *sip.Response, 1)
		go func() { byeDone <- c.do(sip.BYE, "") }()
		room.reply(room.next(10*time.Second, isMethod(sip.BYE)).(*sip.Request), 200)
		<-byeDone
	}
	call(flow2, "viaedge2")
	flow2.conn.Close()
	waitNoCalls(t, n1, n2, n3)
	call(flow1, "viaedge1")
	waitNoCalls(t, n1, n2, n3)
	n2.Close()
	call(flow1, "edge2gone")
}

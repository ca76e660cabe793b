package sbc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// strangerInvite is an INVITE from a raw peer at local to user@domain, with extra header lines
// (each ending in CRLF) and an SDP body.
func strangerInvite(local, user, domain, fromName, extra string) string {
	body := strings.ReplaceAll(testSDP, "127.0.0.1", strings.Split(local, ":")[0])
	return "INVITE sip:" + user + "@" + domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: " + fromName + "<sip:eve@outside.example>;tag=" + randHex()[:8] + "\r\n" +
		"To: <sip:" + user + "@" + domain + ">\r\nCall-ID: " + randHex() + "@outside\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:eve@" + local + ">\r\n" + extra +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// TestHeaderInjectionNeverReachesRoom (issue 14 item 3): a stranger calls a room that blocks
// auto-answer with bare LFs inside relayed header values and its From display name,
// each hiding a header line; the room is a raw UDP socket that records the bytes it gets. No
// injected line may reach it (the Call-Info of the issue would defeat auto_answer: block for a
// room stack that accepts bare LF), while the call itself still rings.
func TestHeaderInjectionNeverReachesRoom(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newRawPeer(t, "127.0.0.1")
	room.register(n, "boardroom", "s3cret-board")
	caller := newRawPeer(t, "127.0.0.1")
	extra := "Subject: hi\nCall-Info: <sip:x>;answer-after=0\r\n" +
		"Accept: application/sdp\nX-Inj-Accept: 1\r\n" +
		"Reason: SIP;cause=200\nX-Inj-Reason: 1\r\n" +
		"Call-Info: <http://www.example.com/alice/photo.jpg>;purpose=icon\nAlert-Info: <http://x>;info=alert-autoanswer\r\n" +
		"Alert-Info: <http://www.example.com/sounds/moo.wav>\r\n"
	caller.send(n.addr(t, "udp"), strangerInvite(caller.addr, "boardroom", n.cfg.SIP.Domain, "\"Eve\nX-Inj-From: 1\" ", extra))
	inv := room.next(10*time.Second, startsWith("INVITE "))
	if inv == "" {
		t.Fatal("the room got no INVITE: the call must still ring")
	}
	room.reply(inv, 486, "Busy Here")
	if res := caller.next(10*time.Second, startsWith("SIP/2.0 486")); res == "" {
		t.Error("the caller did not get the room's 486")
	}
	names := lenientHeaderNames(inv)
	for _, bad := range []string{"call-info", "x-inj-accept", "x-inj-reason", "x-inj-from", "alert-info"} {
		if bad == "alert-info" {
			if c := strings.Count(inv, "Alert-Info"); c != 1 { // only the harmless one
				t.Errorf("the room got %d Alert-Info lines, want the harmless one", c)
			}
			continue
		}
		if slices.Contains(names, bad) {
			t.Errorf("the room reads a %s header the caller injected", bad)
		}
	}
	if head, _, _ := strings.Cut(inv, "\r\n\r\n"); strings.ContainsAny(strings.ReplaceAll(head, "\r\n", ""), "\r\n") {
		t.Error("a bare CR or LF reached the room")
	}
	if t.Failed() {
		t.Logf("the room got:\n%s", inv)
	}
}

// TestHeaderInjectionInNeededHeader: a line end inside Content-Type (which the body needs) refuses
// the call with 400; the room sees nothing.
func TestHeaderInjectionInNeededHeader(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newRawPeer(t, "127.0.0.1")
	room.register(n, "boardroom", "s3cret-board")
	caller := newRawPeer(t, "127.0.0.1")
	msg := strangerInvite(caller.addr, "boardroom", n.cfg.SIP.Domain, "", "")
	msg = strings.Replace(msg, "Content-Type: application/sdp\r\n", "Content-Type: application/sdp\nCall-Info: <sip:x>;answer-after=0\r\n", 1)
	caller.send(n.addr(t, "udp"), msg)
	if res := caller.next(10*time.Second, startsWith("SIP/2.0 ")); !strings.HasPrefix(res, "SIP/2.0 400") {
		t.Fatalf("got %q, want 400", strings.SplitN(res, "\r\n", 2)[0])
	}
	if inv := room.next(500*time.Millisecond, startsWith("INVITE ")); inv != "" {
		t.Fatalf("the room got an INVITE:\n%s", inv)
	}
}

// startNodeLogged starts a node that logs into w at level.
func startNodeLogged(t *testing.T, cfg config.Config, w io.Writer, level slog.Level) *Node {
	t.Helper()
	n, err := New(cfg, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := n.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		n.Close()
	})
	return n
}

// TestUnsolicitedResponsesBoundedLogs (issue 14 item 6): 1,500 unsolicited SIP responses and
// 1,500 datagrams that fail to parse make a bounded number of log lines, through the node's
// logger (not the process default one sipgo falls back to), and no packet content is logged
// at ERROR.
func TestUnsolicitedResponsesBoundedLogs(t *testing.T) {
	var def lockedBuffer // what reaches the process default logger
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&def, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	var logs lockedBuffer
	n := startNodeLogged(t, testConfig(t), &logs, slog.LevelDebug)
	addr := n.addr(t, "udp")
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	const flood = 1500
	for i := range flood {
		res := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + addr + ";branch=z9hG4bK-flood" + strconv.Itoa(i) + "\r\n" +
			"From: <sip:x@" + local + ">;tag=1\r\nTo: <sip:y@" + addr + ">;tag=2\r\nCall-ID: flood-" + strconv.Itoa(i) +
			"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		broken := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + local + "\r\nX-Payload: flood-secret-" + strconv.Itoa(i)
		if _, err := c.Write([]byte(res)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(broken)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 { // keep within the socket's receive buffer without timing anything
			if got := sipOptions(t, addr); got != "SIP/2.0 200 OK" {
				t.Fatalf("OPTIONS during the flood: %q", got)
			}
		}
	}
	// The read loop is sequential: once this OPTIONS is answered every datagram was read; the
	// responses are handled on goroutines of their own.
	if got := sipOptions(t, addr); got != "SIP/2.0 200 OK" {
		t.Fatalf("after the flood: %q", got)
	}
	waitFor(t, func() bool { return n.unsolicitedResponses.Load() == flood })
	count := func(s string) (sip, errs int) {
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "flood") || strings.Contains(l, "nhandled sip response") || strings.Contains(l, "failed to parse") ||
				strings.Contains(l, "unsolicited") {
				sip++
				if strings.Contains(l, "level=ERROR") {
					errs++
				}
			}
		}
		return
	}
	nodeLines, nodeErrs := count(logs.String())
	defLines, defErrs := count(def.String())
	t.Logf("log lines about the flood: node %d (%d at ERROR), process default %d (%d at ERROR)", nodeLines, nodeErrs, defLines, defErrs)
	if nodeLines+defLines > 40 {
		t.Errorf("%d log lines for %d unsolicited responses and %d broken datagrams (want a bounded few)", nodeLines+defLines, flood, flood)
	}
	if defLines > 0 {
		t.Errorf("%d lines went to the process default logger, past the node's rate limit", defLines)
	}
	if nodeErrs+defErrs > 0 || strings.Contains(logs.String()+def.String(), "flood-secret") && strings.Contains(logs.String()+def.String(), "level=ERROR msg=\"failed to parse") {
		t.Errorf("packet content logged at ERROR")
	}
}

// TestKeepaliveOnlyConnectionsClosed (issue 14 item 8): 200 TCP connections that only ever send
// CRLF keepalives are closed after the read timeout (1 s here), not held for the idle timeout
// (10 minutes); they are counted as closed slow.
func TestKeepaliveOnlyConnectionsClosed(t *testing.T) {
	cfg := testConfig(t)
	cfg.SIP.ReadTimeout = config.Duration(time.Second)
	cfg.SIP.MaxConnsPerSource = 256
	n := startNode(t, cfg)
	const conns = 200
	var closed atomic.Int32
	stop := make(chan struct{})
	defer close(stop)
	start := time.Now()
	for range conns {
		c, err := net.Dial("tcp", n.addr(t, "tcp"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		go func() { // the peer's keepalives
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
					if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
						return
					}
				}
			}
		}()
		go func() { // pongs until the node closes the connection
			buf := make([]byte, 64)
			for {
				if _, err := c.Read(buf); err != nil {
					closed.Add(1)
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for closed.Load() < conns {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d keepalive-only connections still open after %s (read timeout 1s)", conns-closed.Load(), conns, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d keepalive-only connections closed within %s", conns, time.Since(start).Round(time.Millisecond))
	if s := n.edgeStats.ClosedSlow.Load(); s < conns {
		t.Fatalf("closed slow: %d, want %d", s, conns)
	}
}

// TestGlobalConnectionCap: past sip.max_conns open connections the node refuses new ones (and
// counts them); a connection that closes frees its place.
func TestGlobalConnectionCap(t *testing.T) {
	cfg := testConfig(t)
	cfg.SIP.MaxConns = 5
	n := startNode(t, cfg)
	options := func(c net.Conn) error {
		msg := rawRequest("OPTIONS", "boardroom", "probe", "portcullis-test", n.addr(t, "tcp"), c.LocalAddr().String())
		msg = strings.Replace(msg, "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		nr, err := c.Read(buf)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(buf[:nr]), "SIP/2.0 200") {
			return fmt.Errorf("answer %q", buf[:nr])
		}
		return nil
	}
	var open []net.Conn
	for i := range 5 {
		c, err := net.Dial("tcp", n.addr(t, "tcp"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := options(c); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
	}
	extra, err := net.Dial("tcp", n.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if err := options(extra); err == nil || isTimeoutErr(err) {
		t.Fatalf("a 6th connection was served past max_conns 5: %v", err)
	}
	if r := n.edgeStats.RefusedGlobal.Load(); r != 1 {
		t.Fatalf("refused by the global cap: %d, want 1", r)
	}
	open[0].Close()
	waitFor(t, func() bool { return n.edgeStats.OpenConns.Load() == 4 })
	again, err := net.Dial("tcp", n.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := options(again); err != nil {
		t.Fatalf("after a connection closed: %v", err)
	}
}

// tortureAnswer sends an RFC 4475 torture message over UDP with its Via pointed at the test's
// socket and returns the answer's head ("" when none came).
func tortureAnswer(t *testing.T, n *Node, msg string) string {
	t.Helper()
	c := newRawPeer(t, "127.0.0.1")
	var out []string
	for _, l := range strings.SplitAfter(msg, "\r\n") {
		if strings.HasPrefix(l, "Via:") || strings.HasPrefix(l, "v:") {
			l = "Via: SIP/2.0/UDP " + c.addr + ";branch=z9hG4bK-" + randHex() + ";rport\r\n"
		}
		out = append(out, l)
	}
	c.send(n.addr(t, "udp"), strings.Join(out, ""))
	res := c.next(3*time.Second, startsWith("SIP/2.0 "))
	head, _, _ := strings.Cut(res, "\r\n\r\n")
	return head
}

func torture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/torture/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTortureAnswers (issue 14 item 11): RFC 4475 messages that need a precise refusal get it:
// bext01 (Require of unknown extensions) 420 with Unsupported listing them, mcl01 (two
// Content-Lengths) and mismatch01 (CSeq method differs from the request's) 400. An INVITE
// with an unknown Require gets 420 too; one with only what we support is not refused for it.
func TestTortureAnswers(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newRawPeer(t, "127.0.0.1")
	room.register(n, "boardroom", "s3cret-board")
	for _, tt := range []struct {
		name, msg, want string
		header          string // a header line the answer must carry
	}{
		{"bext01", torture(t, "invalid/bext01.dat"), "SIP/2.0 420 ", "Unsupported: nothingSupportsThis, nothingSupportsThisEither"},
		{"mcl01", torture(t, "invalid/mcl01.dat"), "SIP/2.0 400 ", ""},
		{"mismatch01", torture(t, "invalid/mismatch01.dat"), "SIP/2.0 400 ", ""},
		{"INVITE Require unknown", strangerInvite("127.0.0.1:9", "boardroom", "video.test", "", "Require: 100rel, foo\r\n"), "SIP/2.0 420 ", "Unsupported: foo"},
		{"INVITE Require known", strangerInvite("127.0.0.1:9", "boardroom", "video.test", "", "Require: 100rel, timer\r\n"), "SIP/2.0 100 ", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tortureAnswer(t, n, tt.msg)
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got %q, want %q", strings.SplitN(got, "\r\n", 2)[0], tt.want)
			}
			if tt.header != "" && !strings.Contains(got+"\r\n", "\r\n"+tt.header+"\r\n") {
				t.Fatalf("answer lacks %q:\n%s", tt.header, got)
			}
		})
	}
}

// TestLargeUDPMessageParsed (issue 14 item 11): a 40 KB datagram (under max_message_size
// 65535) is read whole and answered; sipgo's 32 KB read buffer truncated it.
func TestLargeUDPMessageParsed(t *testing.T) {
	n := startNode(t, testConfig(t))
	c := newRawPeer(t, "127.0.0.1")
	body := strings.Repeat("a=x-pad:"+strings.Repeat("0123456789", 10)+"\r\n", 400) // 44 KB
	msg := "OPTIONS sip:boardroom@video.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + c.addr + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@outside.example>;tag=1\r\nTo: <sip:boardroom@video.test>\r\n" +
		"Call-ID: " + randHex() + "@test\r\nCSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if len(msg) <= 40_000 || len(msg) > n.cfg.SIP.MaxMessageSize {
		t.Fatalf("message of %d bytes", len(msg))
	}
	c.send(n.addr(t, "udp"), msg)
	if res := c.next(5*time.Second, startsWith("SIP/2.0 ")); !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("a %d-byte datagram got %q, want 200", len(msg), strings.SplitN(res, "\r\n", 2)[0])
	}
}

// FuzzCheckRequest: whatever a parsed request holds, the checks never panic, and a 420 always
// names what is unsupported.
func FuzzCheckRequest(f *testing.F) {
	for _, name := range []string{"invalid/bext01.dat", "invalid/mcl01.dat", "invalid/mismatch01.dat", "valid/intmeth.dat"} {
		b, err := os.ReadFile("testdata/torture/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nRequire: x\r\n\r\n"))
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := p.ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		res, refused := checkRequest(req)
		if res != nil && !refused {
			t.Fatal("an answer without a refusal")
		}
		if res != nil && res.StatusCode == 420 {
			if h := res.GetHeader("Unsupported"); h == nil || strings.TrimSpace(h.Value()) == "" {
				t.Fatal("420 without Unsupported")
			}
		}
		if req.IsAck() && res != nil {
			t.Fatal("an ACK answered")
		}
	})
}

// TestZoneIDRequestURIStealth (issue 14 item 11): an INVITE whose Request-URI host is one of
// the node's IPv6 addresses with a zone ID: the guard took it for the node's address (a room
// dialled by IP), the B2BUA did not, and a stranger got "403 Relaying Denied", which tells a
// scanner that a SIP node is there. A zone ID means nothing outside the sender's host: in
// stealth the request gets the stealth answer (none).
func TestZoneIDRequestURIStealth(t *testing.T) {
	cfg := callConfig(t)
	cfg.SIP.Listen = append(cfg.SIP.Listen, config.Listen{Transport: "udp", Addr: netip.MustParseAddrPort("[::1]:0")})
	n := startNode(t, cfg)
	for _, host := range []string{"[::1%25lo]", "[::1%lo]", "[fe80::1%25eth0]"} {
		t.Run(host, func(t *testing.T) {
			c := newRawPeer(t, "127.0.0.51")
			c.send(n.addr(t, "udp"), strangerInvite(c.addr, "boardroom", host, "", ""))
			if res := c.next(2*time.Second, startsWith("SIP/2.0 ")); res != "" {
				t.Fatalf("a stranger's INVITE to %s was answered %q", host, strings.SplitN(res, "\r\n", 2)[0])
			}
		})
	}
}

// answerShape is what a peer can tell of an answer: its status line and header names, with
// tags, branches, nonces and addresses left out.
func answerShape(msg string) string {
	if msg == "" {
		return "(no answer)"
	}
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	shape := []string{lines[0]}
	for _, l := range lines[1:] {
		name, _, _ := strings.Cut(l, ":")
		shape = append(shape, name)
	}
	return strings.Join(shape, "|")
}

// TestStealthStrangerInvites (issue 14 item 7): in stealth mode a stranger (not allow-listed,
// not a registered room, not the node itself or a cluster peer) calling a room it may not call
// (allow list), a room that is not registered, a room in do-not-disturb, and a name that is no
// room gets the same answer: none, whatever the time waited. The node itself (127.0.0.1
// here, as an allowed caller) still gets the precise codes, DND's configured one included.
// And a caller claiming to be a room at the node's IP address gets the same 407 whether or
// not the name is a room.
func TestStealthStrangerInvites(t *testing.T) {
	cfg := callConfig(t)
	code603 := 603
	cfg.Rooms = append(cfg.Rooms,
		config.Room{Name: "vip", Password: "vip-pass", Inbound: "allowlist", Allow: []string{"ceo@partner.example"}},
		config.Room{Name: "quiet", Password: "quiet-pass", Inbound: "dnd", DNDCode: &code603},
		config.Room{Name: "away", Password: "away-pass", Inbound: "open"}, // never registers
	)
	n := startNode(t, cfg)
	for _, r := range []struct{ name, pass string }{{"vip", "vip-pass"}, {"quiet", "quiet-pass"}, {"boardroom", "s3cret-board"}} {
		newRawPeer(t, "127.0.0.1").register(n, r.name, r.pass)
	}
	domain := n.cfg.SIP.Domain
	call := func(src, user, fromName, fromUserHost string) (string, time.Duration) {
		t.Helper()
		c := newRawPeer(t, src)
		msg := strangerInvite(c.addr, user, domain, fromName, "")
		if fromUserHost != "" {
			msg = strings.Replace(msg, "<sip:eve@outside.example>", "<sip:"+fromUserHost+">", 1)
		}
		start := time.Now()
		c.send(n.addr(t, "udp"), msg)
		res := c.next(3*time.Second, startsWith("SIP/2.0 "))
		return res, time.Since(start)
	}
	shapes := map[string]string{}
	for i, target := range []string{"vip", "away", "quiet", "nosuchroom"} {
		res, _ := call("127.0.0."+strconv.Itoa(61+i), target, "", "")
		shapes[target] = answerShape(res)
	}
	t.Logf("stranger answers: %v", shapes)
	for target, s := range shapes {
		if s != shapes["nosuchroom"] {
			t.Errorf("a stranger tells %s from an absent name: %q vs %q", target, s, shapes["nosuchroom"])
		}
	}
	// The control: an open, registered room rings for a stranger.
	if res, _ := call("127.0.0.65", "boardroom", "", ""); !strings.HasPrefix(res, "SIP/2.0 100 ") {
		t.Errorf("open room: %q, want it to ring", answerShape(res))
	}
	// Allowed callers (here the node's own address) keep the precise codes.
	for _, tt := range []struct{ target, want string }{{"vip", "SIP/2.0 403 "}, {"away", "SIP/2.0 480 "}, {"quiet", "SIP/2.0 603 "}} {
		if res, _ := call("127.0.0.1", tt.target, "", ""); !strings.HasPrefix(res, tt.want) {
			t.Errorf("an allowed caller to %s got %q, want %q", tt.target, answerShape(res), tt.want)
		}
	}
	// From: name@<node IP>: a room's name and an unknown name draw the same answer.
	room, rt := call("127.0.0.66", "boardroom", "", "vip@127.0.0.1")
	other, ot := call("127.0.0.67", "boardroom", "", "nosuchroom@127.0.0.1")
	t.Logf("From room@node IP: %q in %s; From nosuchroom@node IP: %q in %s", answerShape(room), rt, answerShape(other), ot)
	if answerShape(room) != answerShape(other) {
		t.Errorf("From name@<node IP> tells rooms apart: %q vs %q", answerShape(room), answerShape(other))
	}
}

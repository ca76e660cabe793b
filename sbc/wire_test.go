package sbc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/sbc/wirecheck"
)

// wire records every message a node's listeners write.
type wire struct {
	mu   sync.Mutex
	msgs []wireMsg
}

type wireMsg struct {
	transport, to string
	b             []byte
}

// tapped is a startNode setup that records what the node writes into w.
func (w *wire) tapped(n *Node) {
	n.tap = func(transport string, to net.Addr, msg []byte) {
		if len(bytes.Trim(msg, "\r\n")) == 0 {
			return // CRLF keepalive answers
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, wireMsg{transport, to.String(), bytes.Clone(msg)})
		w.mu.Unlock()
	}
}

func (w *wire) all() []wireMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]wireMsg(nil), w.msgs...)
}

// wireProblems checks messages with our strict RFC 3261 rules (wirecheck.Check) and with
// tshark's SIP dissector, and returns every problem with the start of its message.
func wireProblems(t *testing.T, msgs []wireMsg) []string {
	t.Helper()
	bin := testpeer.Require(t, "tshark")
	raw := make([][]byte, len(msgs))
	for i, m := range msgs {
		raw[i] = m.b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ts, err := wirecheck.Tshark(ctx, bin, t.TempDir(), raw)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, m := range msgs {
		probs := append(wirecheck.Check(m.b), ts[i]...)
		if len(probs) > 0 {
			first, _, _ := strings.Cut(string(m.b), "\r\n")
			out = append(out, fmt.Sprintf("message %d (%s to %s, %q): %s\n%s", i, m.transport, m.to, first,
				strings.Join(probs, "; "), m.b))
		}
	}
	return out
}

// checkWire fails the test for any problem in what the node wrote.
func checkWire(t *testing.T, w *wire) {
	t.Helper()
	msgs := w.all()
	if len(msgs) == 0 {
		t.Fatal("nothing captured")
	}
	probs := wireProblems(t, msgs)
	for _, p := range probs {
		t.Error(p)
	}
	methods := map[string]int{}
	for _, m := range msgs {
		checkNeutral(t, m.transport+" to "+m.to, m.b) // nothing names the product (issue 13 item 8)
		first, _, _ := strings.Cut(string(m.b), " ")
		if first == "SIP/2.0" {
			first = string(m.b[8:11])
		}
		methods[first]++
	}
	t.Logf("%d messages the node wrote checked by wirecheck and tshark, %d with problems: %v", len(msgs), len(probs), methods)
}

// TestWireHygiene runs representative flows against a node (registration with its challenge,
// keepalives, OPTIONS, inbound calls answered, busy and cancelled, a re-INVITE, an outbound call
// with its 407, a room system's large call) and checks every message the node wrote with an
// independent parser (tshark's SIP dissector: no malformed packet, no expert warning) and with
// RFC 3261's rules (single-valued headers once, Content-Length equal to the body, ...).
func TestWireHygiene(t *testing.T) {
	testpeer.Require(t, "sipp")
	testpeer.Require(t, "tshark")
	calls := []struct{ name, uas, uac string }{
		{"call answered, caller hangs up", "uas.xml", "uac.xml"},
		{"callee hangs up", "uas_bye.xml", "uac_wait_bye.xml"},
		{"re-INVITE hold and resume", "uas_hold.xml", "uac_hold.xml"},
		{"caller cancels", "uas_ring.xml", "uac_cancel.xml"},
		{"busy", "uas_busy.xml", "uac_486.xml"},
		{"room system's large call", "uas_big.xml", "uac_big.xml"},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			w := &wire{}
			n := startNode(t, callConfig(t), w.tapped)
			uas := sippRoom(t, n, "boardroom", "s3cret-board", tt.uas, 1)
			sippCall(t, n, "boardroom", tt.uac, 1)
			uas.wait(t)
			records(t, n, 1)
			checkWire(t, w)
		})
	}
	t.Run("keepalive, OPTIONS, registration over TCP", func(t *testing.T) {
		w := &wire{}
		n := startNode(t, callConfig(t), w.tapped)
		uas := sippRoom(t, n, "room2", "room2-pass", "uas.xml", 1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.reg.Tick(ctx) // an OPTIONS down the room's UDP flow, answered by SIPp (-aa)
		if st := sipOptions(t, n.addr(t, "udp")); !strings.HasPrefix(st, "SIP/2.0 200") {
			t.Fatalf("OPTIONS: %s", st)
		}
		if res := registerRoom(t, n, "tcp", "s3cret-board"); res.StatusCode != 200 {
			t.Fatalf("REGISTER over TCP: %d", res.StatusCode)
		}
		_ = uas.cmd.Process.Kill()
		checkWire(t, w)
	})
	t.Run("outbound call with 407", func(t *testing.T) {
		w := &wire{}
		farPort := testpeer.FreeUDPPort(t)
		cfg := callConfig(t)
		cfg.Calls.DNS = dnsServer(t, []*dns.SRV{{Priority: 10, Weight: 10, Port: uint16(farPort), Target: "far1.far.test."}})
		n := startNode(t, cfg, w.tapped)
		far := startSIPp(t, "-sf", "uas.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(farPort), "-m", "1", "-timeout", "30s", "-timeout_error")
		time.Sleep(200 * time.Millisecond)
		sippCall(t, n, "meeting", "uac_out.xml", 1, "-au", "boardroom", "-ap", "s3cret-board",
			"-auth_uri", "meeting@far.test", "-key", "room", "boardroom", "-key", "domain", cfg.SIP.Domain, "-key", "target", "far.test")
		far.wait(t)
		records(t, n, 1)
		checkWire(t, w)
	})
}

// TestWireCheckCatchesDuplicateContentType proves the check used by TestWireHygiene fails on
// what the node used to send: a relayed 200 OK carrying Content-Type twice.
func TestWireCheckCatchesDuplicateContentType(t *testing.T) {
	ok := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nFrom: <sip:caller@127.0.0.1>;tag=a\r\n" +
		"To: <sip:boardroom@video.test>;tag=b\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5060>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(testSDP)) + "\r\n\r\n" + testSDP
	dup := strings.Replace(ok, "Content-Type: application/sdp\r\n", "Content-Type: application/sdp\r\nContent-Type: application/sdp\r\n", 1)
	got := wireProblems(t, []wireMsg{{"UDP", "127.0.0.1:5070", []byte(ok)}, {"UDP", "127.0.0.1:5070", []byte(dup)}})
	if len(got) != 1 || !strings.HasPrefix(got[0], "message 1 ") || !strings.Contains(got[0], "content-type appears 2 times") {
		t.Fatalf("want exactly the duplicated Content-Type reported, got %q", got)
	}
}

// TestNoProductNameOnTheWire: with the shipped defaults (sip.user_agent empty) nothing the node
// sends in a registration, a keepalive, an OPTIONS answer or a call names the product or its SIP
// stack (a scanner's fingerprint). The domain is the operator's (sip.domain).
func TestNoProductNameOnTheWire(t *testing.T) {
	testpeer.Require(t, "sipp")
	w := &wire{}
	cfg := callConfig(t)
	if cfg.SIP.UserAgent != "" {
		t.Fatal("the test config sets a user agent")
	}
	n := startNode(t, cfg, w.tapped)
	uas := sippRoom(t, n, "boardroom", "s3cret-board", "uas.xml", 1)
	sippCall(t, n, "room2", "uac_480.xml", 1) // a room with no binding: 480
	sippCall(t, n, "boardroom", "uac.xml", 1)
	uas.wait(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.reg.Tick(ctx) // keepalive OPTIONS down the room's flow (SIPp has finished: unanswered)
	sipOptions(t, n.addr(t, "udp"))
	registerRoom(t, n, "tcp", "s3cret-board")
	msgs := w.all()
	kinds := map[string]bool{}
	for _, m := range msgs {
		first, _, _ := strings.Cut(string(m.b), "\r\n")
		kinds[first[:min(len(first), 20)]] = true
		low := strings.ToLower(string(m.b))
		for _, name := range []string{"portcullis", "sipgo"} {
			if strings.Contains(low, name) {
				t.Errorf("%q on the wire (%s to %s):\n%s", name, m.transport, m.to, m.b)
			}
		}
	}
	t.Logf("%d messages checked: %v", len(msgs), kinds)
}

package sbc

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// testUA is a SIP endpoint for call tests (a room system or an outside caller): a sipgo UA on
// its own UDP port, which logs every message it receives so tests can look for leaks.
type testUA struct {
	t      *testing.T
	name   string
	addr   string
	port   int
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	cli    *sipgo.Client
	cancel context.CancelFunc

	host    string        // the UA's IP (127.0.0.1 unless newTestUAOn)
	node    string        // the node's address it sends to; empty: the node's first UDP listener
	tag     string        // To tag for new dialogs; empty: random
	timeout time.Duration // how long invite waits for a final answer (default 15s)

	mu       sync.Mutex
	received []string
	requests chan *sip.Request
	// onInvite answers INVITEs (dialog-creating and re-INVITEs); default: 180 then 200 with SDP.
	onInvite func(req *sip.Request, tx sip.ServerTransaction)
}

const testSDP = "v=0\r\no=ua 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

func newTestUA(t *testing.T, name string) *testUA {
	t.Helper()
	return newTestUAOn(t, name, "127.0.0.1", testpeer.FreeUDPPort(t))
}

// newTestUAOn is newTestUA on host:port (an IPv6 UA: "::1").
func newTestUAOn(t *testing.T, name, host string, port int) *testUA {
	t.Helper()
	u := &testUA{t: t, name: name, port: port, host: host, addr: net.JoinHostPort(host, strconv.Itoa(port)), requests: make(chan *sip.Request, 64)}
	var err error
	if u.ua, err = sipgo.NewUA(sipgo.WithUserAgent(name)); err != nil {
		t.Fatal(err)
	}
	if u.srv, err = sipgo.NewServer(u.ua); err != nil {
		t.Fatal(err)
	}
	if u.cli, err = sipgo.NewClient(u.ua, sipgo.WithClientHostname(host), sipgo.WithClientPort(port),
		sipgo.WithClientConnectionAddr(u.addr)); err != nil {
		t.Fatal(err)
	}
	handle := func(req *sip.Request, tx sip.ServerTransaction) {
		u.log(req.String())
		select {
		case u.requests <- req:
		default:
		}
		switch {
		case req.IsInvite():
			u.mu.Lock()
			f := u.onInvite
			u.mu.Unlock()
			if f != nil {
				f(req, tx)
				return
			}
			u.answer(req, tx, testSDP)
		case req.IsAck():
		default:
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		}
	}
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.UPDATE, sip.INFO, sip.OPTIONS, sip.PRACK} {
		u.srv.OnRequest(m, handle)
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	go func() { _ = u.srv.ListenAndServe(ctx, "udp", u.addr) }()
	// the client sends from the listener socket: wait until the transport layer holds it (sipgo
	// says it listens before it pools the socket)
	testutil.Eventually(t, "test UA "+u.addr+" listening", func() bool {
		c, err := u.ua.TransportLayer().GetConnection("udp", u.addr)
		return err == nil && c != nil
	})
	t.Cleanup(u.close)
	return u
}

// nodeAddr is where the UA sends its requests to the node.
func (u *testUA) nodeAddr(n *Node) string {
	if u.node != "" {
		return u.node
	}
	return n.addr(u.t, "udp")
}

// handleInvite sets how the UA answers INVITEs.
func (u *testUA) handleInvite(f func(req *sip.Request, tx sip.ServerTransaction)) {
	u.mu.Lock()
	u.onInvite = f
	u.mu.Unlock()
}

func (u *testUA) close() {
	u.cancel()
	u.ua.Close()
}

func (u *testUA) log(s string) {
	u.mu.Lock()
	u.received = append(u.received, s)
	u.mu.Unlock()
}

// seen returns everything the UA received.
func (u *testUA) seen() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return strings.Join(u.received, "\n")
}

// answer rings and answers an INVITE with sdp.
func (u *testUA) answer(req *sip.Request, tx sip.ServerTransaction, sdp string) {
	tag := u.tag
	if tag == "" {
		tag = sip.GenerateTagN(10)
	}
	if to := req.To(); to != nil {
		if t, ok := to.Params.Get("tag"); ok {
			tag = t
		}
	}
	for _, code := range []int{180, 200} {
		if code == 180 && req.To().Params.Has("tag") {
			continue
		}
		var body []byte
		if code == 200 && sdp != "" {
			body = []byte(sdp)
		}
		res := sip.NewResponseFromRequest(req, code, map[int]string{180: "Ringing", 200: "OK"}[code], body)
		res.To().Params.Add("tag", tag)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: u.name, Host: u.host, Port: u.port}})
		if body != nil {
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		_ = tx.Respond(res)
	}
}

// register registers the UA as room at the node, answering the digest challenge.
func (u *testUA) register(n *Node, room, password string) {
	u.t.Helper()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: n.cfg.SIP.Domain})
	req.SetDestination(u.nodeAddr(n))
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: room, Host: n.cfg.SIP.Domain}}
	from := &sip.FromHeader{Address: to.Address}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(to)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: room, Host: u.host, Port: u.port}})
	req.AppendHeader(sip.NewHeader("Expires", "300"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := u.cli.Do(ctx, req)
	if err == nil && res.StatusCode == 401 {
		res, err = u.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: room, Password: password})
	}
	if err != nil || res.StatusCode != 200 {
		u.t.Fatalf("register %s: %v %v", room, err, res)
	}
}

// call is an outgoing call of a test UA.
type testCall struct {
	u      *testUA
	invite *sip.Request
	final  *sip.Response
	tx     sip.ClientTransaction
	cseq   uint32
}

// invite sends an INVITE to target via the node and waits for the final response. It answers
// 407 with the digest of user/password when given.
func (u *testUA) invite(n *Node, target sip.Uri, fromUser, fromHost string, sdp string, auth *sipgo.DigestAuth, hdrs ...sip.Header) *testCall {
	u.t.Helper()
	req := sip.NewRequest(sip.INVITE, target)
	req.SetDestination(u.nodeAddr(n))
	from := &sip.FromHeader{DisplayName: u.name, Address: sip.Uri{Scheme: "sip", User: fromUser, Host: fromHost}}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: target.User, Host: target.Host}})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: u.name, Host: u.host, Port: u.port}})
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if sdp != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody([]byte(sdp))
	}
	c := &testCall{u: u, invite: req, cseq: 1}
	wait := u.timeout
	if wait == 0 {
		// past Timer B (32 s): a call the node never answers ends by SIP's own rule, and a
		// loaded CI machine is never mistaken for a lost call (a 15 s bound once was)
		wait = 40 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, tx := c.send(ctx, req)
	if res != nil && res.StatusCode == 407 && auth != nil {
		c.ack(res)
		req = req.Clone()
		req.RemoveHeader("Via")
		req.CSeq().SeqNo++
		c.cseq++
		c.invite = req
		if err := sipgoDigest(req, res, *auth); err != nil {
			u.t.Fatal(err)
		}
		res, tx = c.send(ctx, req)
	}
	c.final, c.tx = res, tx
	if res != nil && !res.IsSuccess() {
		c.ack(res)
	}
	return c
}

func (c *testCall) send(ctx context.Context, req *sip.Request) (*sip.Response, sip.ClientTransaction) {
	tx, err := c.u.cli.TransactionRequest(ctx, req)
	if err != nil {
		c.u.t.Fatal(err)
	}
	for {
		select {
		case res := <-tx.Responses():
			c.u.log(res.String())
			if res.StatusCode >= 200 {
				return res, tx
			}
		case <-tx.Done():
			return nil, tx
		case <-ctx.Done():
			return nil, tx
		}
	}
}

// ack acknowledges the final response (non-2xx ACKs are sent by the transaction layer).
func (c *testCall) ack(res *sip.Response) {
	if !res.IsSuccess() {
		return
	}
	ack := c.inDialog(sip.ACK, c.cseq)
	_ = c.u.cli.WriteRequest(ack)
}

// inDialog builds a request in the call's dialog.
func (c *testCall) inDialog(m sip.RequestMethod, cseq uint32) *sip.Request {
	target := c.invite.Recipient
	if ct := c.final.Contact(); ct != nil {
		target = ct.Address
	}
	req := sip.NewRequest(m, target)
	req.SetDestination(c.invite.Destination())
	req.AppendHeader(sip.HeaderClone(c.invite.From()))
	req.AppendHeader(sip.HeaderClone(c.final.To()))
	req.AppendHeader(sip.HeaderClone(c.invite.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: m})
	return req
}

// do sends an in-dialog request and returns its final response.
func (c *testCall) do(m sip.RequestMethod, body string, hdrs ...sip.Header) *sip.Response {
	c.u.t.Helper()
	c.cseq++
	req := c.inDialog(m, c.cseq)
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if body != "" {
		req.SetBody([]byte(body))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.u.cli.Do(ctx, req)
	if err != nil {
		c.u.t.Fatalf("%s: %v", m, err)
	}
	c.u.log(res.String())
	if m == sip.INVITE && res.IsSuccess() {
		ack := c.inDialog(sip.ACK, c.cseq)
		_ = c.u.cli.WriteRequest(ack)
	}
	return res
}

// waitRequest waits for the UA to receive a request of method m.
func (u *testUA) waitRequest(m sip.RequestMethod, within time.Duration) *sip.Request {
	u.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case r := <-u.requests:
			if r.Method == m {
				return r
			}
		case <-deadline:
			u.t.Fatalf("%s: no %s within %s", u.name, m, within)
			return nil
		}
	}
}

// sipgoDigest answers a 407 challenge on req with Proxy-Authorization.
func sipgoDigest(req *sip.Request, res *sip.Response, auth sipgo.DigestAuth) error {
	h := res.GetHeader("Proxy-Authenticate")
	if h == nil {
		return fmt.Errorf("407 without Proxy-Authenticate")
	}
	cred, err := testutil.DigestAnswer(h.Value(), string(req.Method), req.Recipient.String(), auth.Username, auth.Password)
	if err != nil {
		return err
	}
	req.AppendHeader(sip.NewHeader("Proxy-Authorization", cred))
	return nil
}

package b2bua

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

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// The rig is the engine on a real sipgo user agent bound to a UDP socket on 127.0.0.1, and the
// phones around it are plain UDP sockets that write and read SIP text, as a peer does: no
// fakes between the engine and the wire.

const (
	testDomain = "example.com"
	waitLong   = 10 * time.Second // generous: -race on a loaded 2-core box
	testSDP    = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

type rig struct {
	t     *testing.T
	e     *Engine
	addr  string // the engine's SIP address, 127.0.0.1:port
	port  int
	store *state.Local

	mu       sync.Mutex
	bindings map[string][]state.Binding
	ended    []state.CallRecord
	trunk    string // set: new calls enter as trunk calls signed by this node (HandleTrunkCall)
	// edge, when set, describes new calls for the guard as a node's edge does: they enter
	// through HandleNewCall with what it returns.
	edge func(*sip.Request) *guard.Request
}

// newRig starts an engine; mod may change its config and deps before it is built.
func newRig(t *testing.T, mod func(*Config, *Deps)) *rig {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port),
		sipgo.WithClientConnectionAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, addr: addr, port: port, store: state.NewLocal(), bindings: map[string][]state.Binding{}}
	cfg := Config{
		Domain:  testDomain,
		NodeID:  "n1",
		Contact: func(string) sip.Uri { return sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: port} },
		Local:   func(h string) bool { return h == testDomain || h == "127.0.0.1" },
		Bindings: func(room string) []state.Binding {
			r.mu.Lock()
			defer r.mu.Unlock()
			return append([]state.Binding(nil), r.bindings[room]...)
		},
		CallEnded: func(rec state.CallRecord) {
			r.mu.Lock()
			r.ended = append(r.ended, rec)
			r.mu.Unlock()
		},
	}
	deps := Deps{Client: client, Store: r.store}
	if mod != nil {
		mod(&cfg, &deps)
	}
	if r.e, err = New(cfg, deps); err != nil {
		t.Fatal(err)
	}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		r.mu.Lock()
		node, edge := r.trunk, r.edge
		r.mu.Unlock()
		if to := req.To(); to != nil && !to.Params.Has("tag") {
			switch {
			case node != "":
				r.e.HandleTrunkCall(req, tx, node)
				return
			case edge != nil:
				r.e.HandleNewCall(req, tx, edge(req))
				return
			}
		}
		r.e.HandleInvite(req, tx)
	})
	for _, m := range []sip.RequestMethod{sip.BYE, sip.CANCEL, sip.UPDATE, sip.INFO, sip.PRACK, sip.ACK, sip.OPTIONS} {
		srv.OnRequest(m, r.e.HandleInDialog)
	}
	go func() { _ = srv.ServeUDP(pc) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.e.Drain(ctx)
		_ = ua.Close()
		_ = pc.Close()
	})
	return r
}

// room adds a room to the state.
func (r *rig) room(name string) {
	r.t.Helper()
	if err := r.store.Propose(context.Background(), state.PutRoom(state.Room{Name: name})); err != nil {
		r.t.Fatal(err)
	}
}

// bind registers phone p as a binding of room.
func (r *rig) bind(room string, p *phone) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bindings[room] = append(r.bindings[room], state.Binding{Room: room, Contact: "sip:" + room + "@" + p.addr,
		Source: p.addr, Transport: "udp", Node: "n1"})
}

// records returns the call records written so far.
func (r *rig) records() []state.CallRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]state.CallRecord(nil), r.ended...)
}

// waitIdle waits until the engine holds no call and returns the records.
func (r *rig) waitIdle() []state.CallRecord {
	r.t.Helper()
	testutil.Eventually(r.t, "engine idle", func() bool { return r.e.Active() == 0 })
	return r.records()
}

// phone is a SIP peer on its own UDP socket.
type phone struct {
	t    *testing.T
	conn net.PacketConn
	addr string
	port int
	in   chan sip.Message
	cseq int
}

func newPhone(t *testing.T) *phone {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &phone{t: t, conn: pc, addr: pc.LocalAddr().String(), port: pc.LocalAddr().(*net.UDPAddr).Port,
		in: make(chan sip.Message, 64)}
	go func() {
		buf := make([]byte, 65535)
		parser := sip.NewParser()
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				close(p.in)
				return
			}
			m, err := parser.ParseSIP(append([]byte(nil), buf[:n]...))
			if err != nil {
				continue
			}
			m.SetSource(from.String())
			select {
			case p.in <- m:
			default: // a test that stopped reading: drop, like a full socket
			}
		}
	}()
	t.Cleanup(func() { _ = pc.Close() })
	return p
}

func (p *phone) send(to string, m sip.Message) {
	p.t.Helper()
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.conn.WriteTo([]byte(m.String()), ua); err != nil {
		p.t.Fatal(err)
	}
}

// next waits for the first message that match accepts; the others are skipped (100 Trying,
// retransmissions).
func (p *phone) next(what string, match func(sip.Message) bool) sip.Message {
	p.t.Helper()
	deadline := time.After(waitLong)
	for {
		select {
		case m, ok := <-p.in:
			if !ok {
				p.t.Fatalf("%s: socket closed", p.addr)
			}
			if match(m) {
				return m
			}
		case <-deadline:
			p.t.Fatalf("%s: timed out waiting for %s", p.addr, what)
		}
	}
}

// request waits for a request with method.
func (p *phone) request(method sip.RequestMethod) *sip.Request {
	p.t.Helper()
	return p.next(string(method), func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	}).(*sip.Request)
}

// response waits for a response with code to a request with method.
func (p *phone) response(method sip.RequestMethod, code int) *sip.Response {
	p.t.Helper()
	return p.next(fmt.Sprintf("%d to %s", code, method), func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == code && r.CSeq() != nil && r.CSeq().MethodName == method
	}).(*sip.Response)
}

// final waits for the final response to a request with method.
func (p *phone) final(method sip.RequestMethod) *sip.Response {
	p.t.Helper()
	return p.next("final response to "+string(method), func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode >= 200 && r.CSeq() != nil && r.CSeq().MethodName == method
	}).(*sip.Response)
}

// finalWithin returns the final response to method that arrives within d, or nil.
func (p *phone) finalWithin(method sip.RequestMethod, d time.Duration) *sip.Response {
	deadline := time.After(d)
	for {
		select {
		case m := <-p.in:
			if r, ok := m.(*sip.Response); ok && r.StatusCode >= 200 && r.CSeq() != nil && r.CSeq().MethodName == method {
				return r
			}
		case <-deadline:
			return nil
		}
	}
}

// quiet reports that no request with method arrives within d (used only to check something
// did NOT happen after a condition was already waited on).
func (p *phone) quiet(method sip.RequestMethod, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case m := <-p.in:
			if r, ok := m.(*sip.Request); ok && r.Method == method {
				return false
			}
		case <-deadline:
			return true
		}
	}
}

// caller is a phone's outgoing dialog as its UAC.
type caller struct {
	p       *phone
	to      string // engine address
	callID  string
	fromTag string
	inv     *sip.Request
	toTag   string
	cseq    uint32
}

// invite sends an INVITE to room at the engine with the extra header lines given.
func (p *phone) invite(engine, room, body string, extra ...string) *caller {
	p.t.Helper()
	c := &caller{p: p, to: engine, callID: strconv.FormatInt(time.Now().UnixNano(), 36) + "@" + p.addr,
		fromTag: sip.GenerateTagN(8), cseq: 1}
	c.inv = p.build(c, sip.INVITE, "sip:"+room+"@"+testDomain, "", 1, body, extra...)
	p.send(engine, c.inv)
	return c
}

// build writes a request of dialog c as text and parses it, as a peer's stack would send it.
func (p *phone) build(c *caller, method sip.RequestMethod, ruri, toTag string, cseq uint32, body string, extra ...string) *sip.Request {
	p.t.Helper()
	to := "<sip:" + strings.TrimPrefix(strings.SplitN(ruri, ";", 2)[0], "sip:") + ">"
	if method != sip.INVITE || toTag != "" {
		to = "<sip:room@" + testDomain + ">"
	}
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return p.text(method, ruri, "\"Alice\" <sip:alice@outside.test>;tag="+c.fromTag, to, c.callID, cseq, "alice", body, extra...)
}

// text writes a request as text from its parts and parses it.
func (p *phone) text(method sip.RequestMethod, ruri, from, to, callID string, cseq uint32, user, body string, extra ...string) *sip.Request {
	p.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK%s\r\n", p.addr, sip.GenerateTagN(12))
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\n", from, to, callID)
	fmt.Fprintf(&b, "CSeq: %d %s\r\nContact: <sip:%s@%s>\r\n", cseq, method, user, p.addr)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	m, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		p.t.Fatalf("test request does not parse: %v\n%s", err, b.String())
	}
	return m.(*sip.Request)
}

// answered records the caller's dialog from a 2xx and ACKs it.
func (c *caller) ack(res *sip.Response) {
	c.p.t.Helper()
	c.toTag, _ = res.To().Params.Get("tag")
	ack := c.p.build(c, sip.ACK, res.Contact().Address.String(), c.toTag, res.CSeq().SeqNo, "")
	c.p.send(c.to, ack)
}

// inDialog sends a request inside the caller's dialog.
func (c *caller) inDialog(method sip.RequestMethod, body string, extra ...string) *sip.Request {
	c.p.t.Helper()
	c.cseq++
	req := c.p.build(c, method, "sip:127.0.0.1", c.toTag, c.cseq, body, extra...)
	c.p.send(c.to, req)
	return req
}

// cancel sends CANCEL for the caller's INVITE.
func (c *caller) cancel() {
	c.p.t.Helper()
	req := sip.NewRequest(sip.CANCEL, c.inv.Recipient)
	req.AppendHeader(sip.HeaderClone(c.inv.Via()))
	req.AppendHeader(sip.NewHeader("Max-Forwards", "70"))
	req.AppendHeader(sip.HeaderClone(c.inv.From()))
	req.AppendHeader(sip.HeaderClone(c.inv.To()))
	req.AppendHeader(sip.HeaderClone(c.inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: c.inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	req.SetBody(nil)
	c.p.send(c.to, req)
}

// reply answers req from phone p (a callee) with code, its tag and its Contact.
func (p *phone) reply(req *sip.Request, code int, tag, body string, extra ...string) *sip.Response {
	p.t.Helper()
	var bb []byte
	if body != "" {
		bb = []byte(body)
	}
	res := sip.NewResponseFromRequest(req, code, ReasonPhrase(code), bb)
	if code == 180 || code == 183 || code == 200 {
		res = sip.NewResponseFromRequest(req, code, map[int]string{180: "Ringing", 183: "Session Progress", 200: "OK"}[code], bb)
	}
	if tag != "" && code > 100 {
		if to := res.To(); to != nil && !to.Params.Has("tag") {
			to.Params.Add("tag", tag)
		}
	}
	if code > 100 && code < 300 && req.Method == sip.INVITE {
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "room", Host: "127.0.0.1", Port: p.port}})
	}
	for _, h := range extra {
		name, value, _ := strings.Cut(h, ":")
		res.AppendHeader(sip.NewHeader(name, strings.TrimSpace(value)))
	}
	if body != "" {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	p.send(req.Source(), res)
	return res
}

// callee is a phone's dialog as the UAS of the engine's INVITE (leg B).
type callee struct {
	p    *phone
	inv  *sip.Request
	tag  string
	cseq uint32
}

func (p *phone) callee(inv *sip.Request, tag string) *callee {
	return &callee{p: p, inv: inv, tag: tag, cseq: 100}
}

// request sends a request inside leg B's dialog toward the engine.
func (d *callee) request(method sip.RequestMethod, body string, extra ...string) *sip.Request {
	d.p.t.Helper()
	d.cseq++
	req := d.p.text(method, d.inv.Contact().Address.String(), d.inv.To().Address.String()+";tag="+d.tag,
		d.inv.From().Value(), d.inv.CallID().Value(), d.cseq, "room", body, extra...)
	d.p.send(d.inv.Source(), req)
	return req
}

// hangUp ends an answered call from the caller's side; b is the callee phone.
func (c *caller) hangUp(r *rig, b *phone) {
	c.p.t.Helper()
	c.inDialog(sip.BYE, "")
	b.reply(b.request(sip.BYE), 200, "", "")
	c.p.response(sip.BYE, 200)
	r.waitIdle()
}

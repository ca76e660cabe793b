package sbc

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

func roomURI(n *Node, room string) sip.Uri {
	return sip.Uri{Scheme: "sip", User: room, Host: n.cfg.SIP.Domain}
}

// identifiers of one side's dialog as it sent it: what must never reach the other side.
func dialogSecrets(req *sip.Request, res *sip.Response, port int) []string {
	var out []string
	if req != nil {
		out = append(out, string(*req.CallID()))
		if tag, _ := req.From().Params.Get("tag"); tag != "" {
			out = append(out, tag)
		}
		if v := req.Via(); v != nil {
			if b, _ := v.Params.Get("branch"); b != "" {
				out = append(out, b)
			}
		}
	}
	if res != nil {
		if tag, _ := res.To().Params.Get("tag"); tag != "" {
			out = append(out, tag)
		}
	}
	out = append(out, ":"+strconv.Itoa(port))
	return out
}

// TestTopologyHiding places a call from an outside caller to a room, the room hangs up; nothing
// that identifies one side's dialog or address reaches the other.
func TestTopologyHiding(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	var roomInvite *sip.Request
	var roomRes *sip.Response
	room.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		room.mu.Lock()
		defer room.mu.Unlock()
		roomInvite = req
		res := sip.NewResponseFromRequest(req, 200, "OK", []byte(testSDP))
		res.To().Params.Add("tag", "roomsecrettag")
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "room", Host: "127.0.0.1", Port: room.port}})
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.AppendHeader(sip.NewHeader("Record-Route", "<sip:10.9.8.7;lr>"))
		res.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:secret@inside.example>"))
		roomRes = res
		_ = tx.Respond(res)
	})
	caller := newTestUA(t, "caller")
	call := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil,
		sip.NewHeader("P-Asserted-Identity", "<sip:ceo@outside.example>"), sip.NewHeader("X-Secret", "caller-internal"),
		sip.NewHeader("Record-Route", "<sip:192.0.2.99;lr>"))
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	testutil.Eventually(t, "the room's answer", func() bool {
		room.mu.Lock() // the handler wrote roomInvite/roomRes under this lock
		defer room.mu.Unlock()
		return roomInvite != nil && roomRes != nil
	})
	// the room hangs up: its BYE carries its own Via branch
	bye := sip.NewRequest(sip.BYE, roomInvite.Contact().Address)
	bye.SetDestination(n.addr(t, "udp"))
	bf, bt := roomRes.To().AsFrom(), roomInvite.From().AsTo()
	bye.AppendHeader(&bf)
	bye.AppendHeader(&bt)
	bye.AppendHeader(sip.HeaderClone(roomInvite.CallID()))
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: 5, MethodName: sip.BYE})
	bye.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.1:"+strconv.Itoa(room.port)+";branch=z9hG4bKroomsecretbranch;rport"))
	ctxRes, err := room.cli.Do(t.Context(), bye)
	if err != nil || ctxRes.StatusCode != 200 {
		t.Fatalf("room BYE: %v %v", err, ctxRes)
	}
	caller.waitRequest(sip.BYE, 5*time.Second)

	callerSaw, roomSaw := caller.seen(), room.seen()
	for _, s := range append(dialogSecrets(roomInvite, roomRes, room.port), "z9hG4bKroomsecretbranch", "10.9.8.7", "inside.example") {
		if strings.Contains(callerSaw, s) {
			t.Errorf("caller saw %q of the room's side", s)
		}
	}
	for _, s := range append(dialogSecrets(call.invite, nil, caller.port), "192.0.2.99", "ceo@outside", "X-Secret", "caller-internal") {
		if strings.Contains(roomSaw, s) {
			t.Errorf("room saw %q of the caller's side", s)
		}
	}
	if t.Failed() {
		t.Logf("caller saw:\n%s\n\nroom saw:\n%s", callerSaw, roomSaw)
	}
	r := records(t, n, 1)[0]
	if r.EndReason != "callee hung up" || r.Status != 200 {
		t.Fatalf("record %+v", r)
	}
}

// dnsServer serves SIP records for far.test from 127.0.0.1: NAPTR -> SRV -> A.
func dnsServer(t *testing.T, srv []*dns.SRV) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc("far.test.", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		hdr := func(name string, typ uint16) dns.RR_Header {
			return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: 60}
		}
		switch q.Question[0].Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Question[0].Name, dns.TypeA), A: net.IPv4(127, 0, 0, 1)})
		case dns.TypeNAPTR:
			m.Answer = append(m.Answer, &dns.NAPTR{Hdr: hdr("far.test.", dns.TypeNAPTR), Order: 10, Preference: 10,
				Flags: "s", Service: "SIP+D2U", Replacement: "_sip._udp.far.test."})
		}
		_ = w.WriteMsg(m)
	})
	mux.HandleFunc("_sip._udp.far.test.", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Qtype == dns.TypeSRV {
			for _, s := range srv {
				s.Hdr = dns.RR_Header{Name: "_sip._udp.far.test.", Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 60}
				m.Answer = append(m.Answer, s)
			}
		}
		_ = w.WriteMsg(m)
	})
	mux.HandleFunc("test.", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.IPv4(127, 0, 0, 1)})
		}
		_ = w.WriteMsg(m)
	})
	s := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = s.ActivateAndServe() }()
	t.Cleanup(func() { _ = s.Shutdown() })
	return pc.LocalAddr().String()
}

// TestOutboundCall: a registered room dials sip:meeting@far.test; it must pass a 407
// challenge; the target comes from NAPTR/SRV, the first SRV target answers 503 and the call
// fails over to the second.
func TestOutboundCall(t *testing.T) {
	far1, far2 := newTestUA(t, "far1"), newTestUA(t, "far2")
	far1.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
	})
	cfg := callConfig(t)
	cfg.Calls.DNS = dnsServer(t, []*dns.SRV{
		{Priority: 10, Weight: 10, Port: uint16(far1.port), Target: "far1.far.test."},
		{Priority: 20, Weight: 10, Port: uint16(far2.port), Target: "far2.far.test."},
	})
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	target := sip.Uri{Scheme: "sip", User: "meeting", Host: "far.test"}

	t.Run("wrong password is refused", func(t *testing.T) {
		c := room.invite(n, target, "boardroom", n.cfg.SIP.Domain, testSDP, &sipgo.DigestAuth{Username: "boardroom", Password: "guess"})
		if c.final == nil || c.final.StatusCode != 403 {
			t.Fatalf("got %v, want 403", c.final)
		}
	})
	t.Run("no credentials get a challenge", func(t *testing.T) {
		c := room.invite(n, target, "boardroom", n.cfg.SIP.Domain, testSDP, nil)
		if c.final == nil || c.final.StatusCode != 407 || c.final.GetHeader("Proxy-Authenticate") == nil {
			t.Fatalf("got %v, want 407 with a challenge", c.final)
		}
	})
	t.Run("outsiders cannot relay", func(t *testing.T) {
		// the guard drops relay attempts silently (stealth); without it the B2BUA answers 403
		stranger := newTestUA(t, "stranger")
		stranger.timeout = 2 * time.Second
		c := stranger.invite(n, target, "someone", "outside.example", testSDP, nil)
		if c.final != nil && c.final.StatusCode != 403 {
			t.Fatalf("got %v, want 403 or no answer", c.final)
		}
		if len(far1.seen())+len(far2.seen()) > 0 {
			t.Fatal("a far end was reached")
		}
	})
	t.Run("authenticated call fails over to the second target", func(t *testing.T) {
		c := room.invite(n, target, "boardroom", n.cfg.SIP.Domain, testSDP, &sipgo.DigestAuth{Username: "boardroom", Password: "s3cret-board"})
		if c.final == nil || c.final.StatusCode != 200 {
			t.Fatalf("call: %v", c.final)
		}
		c.ack(c.final)
		inv := far2.waitRequest(sip.INVITE, 2*time.Second)
		if inv.Recipient.User != "meeting" || inv.From().Address.User != "boardroom" || inv.From().Address.Host != "video.test" {
			t.Fatalf("far end got %s from %s", inv.Recipient.String(), inv.From().Address.String())
		}
		if strings.Contains(far2.seen(), ":"+strconv.Itoa(room.port)) {
			t.Fatal("the far end saw the room's port")
		}
		if res := c.do(sip.BYE, ""); res.StatusCode != 200 {
			t.Fatalf("BYE: %d", res.StatusCode)
		}
		far2.waitRequest(sip.BYE, 2*time.Second)
		var rec state.CallRecord
		waitFor(t, func() bool {
			for _, r := range n.Store().State().Records(state.RecordQuery{}) {
				if r.Direction == state.Outbound && r.Status == 200 {
					rec = r
					return true
				}
			}
			return false
		})
		if rec.Room != "boardroom" || rec.To != "sip:meeting@far.test" {
			t.Fatalf("record %+v", rec)
		}
	})
}

// TestInDialogRelay: the room puts the call on hold (re-INVITE from the callee side), the
// caller sends DTMF by INFO and an UPDATE; each crosses to the other leg and back.
func TestInDialogRelay(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newTestUA(t, "room")
	room.tag = "roomdialogtag"
	room.register(n, "boardroom", "s3cret-board")
	var roomInvite *sip.Request
	room.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if !req.To().Params.Has("tag") {
			room.mu.Lock()
			roomInvite = req
			room.mu.Unlock()
		}
		room.answer(req, tx, testSDP)
	})
	caller := newTestUA(t, "caller")
	call := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	room.mu.Lock() // the handler wrote roomInvite under this lock
	room.mu.Unlock()

	// INFO (DTMF) caller -> room
	res := call.do(sip.INFO, "Signal=5\r\nDuration=160\r\n", sip.NewHeader("Content-Type", "application/dtmf-relay"))
	if res.StatusCode != 200 {
		t.Fatalf("INFO: %d", res.StatusCode)
	}
	info := room.waitRequest(sip.INFO, 2*time.Second)
	if string(info.Body()) != "Signal=5\r\nDuration=160\r\n" || headerOf(info, "Content-Type") != "application/dtmf-relay" {
		t.Fatalf("room got INFO %q %q", info.Body(), headerOf(info, "Content-Type"))
	}
	// UPDATE caller -> room
	if res := call.do(sip.UPDATE, ""); res.StatusCode != 200 {
		t.Fatalf("UPDATE: %d", res.StatusCode)
	}
	room.waitRequest(sip.UPDATE, 2*time.Second)

	// re-INVITE room -> caller (hold): the caller sees a re-INVITE with sendonly SDP
	var gotHold *sip.Request
	caller.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		caller.mu.Lock()
		gotHold = req
		caller.mu.Unlock()
		caller.answer(req, tx, strings.Replace(testSDP, "sendrecv", "recvonly", 1))
	})
	hold := sip.NewRequest(sip.INVITE, roomInvite.Contact().Address)
	hold.SetDestination(n.addr(t, "udp"))
	hf := &sip.FromHeader{Address: roomInvite.To().Address}
	hf.Params.Add("tag", room.tag)
	ht := roomInvite.From().AsTo()
	hold.AppendHeader(hf)
	hold.AppendHeader(&ht)
	hold.AppendHeader(sip.HeaderClone(roomInvite.CallID()))
	hold.AppendHeader(&sip.CSeqHeader{SeqNo: 10, MethodName: sip.INVITE})
	hold.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "room", Host: "127.0.0.1", Port: room.port}})
	hold.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	hold.SetBody([]byte(strings.Replace(strings.Replace(testSDP, "sendrecv", "sendonly", 1), "o=ua 1 1", "o=ua 1 2", 1)))
	hres, err := room.cli.Do(t.Context(), hold)
	if err != nil || hres.StatusCode != 200 {
		t.Fatalf("hold re-INVITE: %v %v", err, hres)
	}
	if !strings.Contains(string(hres.Body()), "a=recvonly") {
		t.Fatalf("hold answer lost its direction:\n%s", hres.Body())
	}
	ack := sip.NewRequest(sip.ACK, roomInvite.Contact().Address)
	ack.SetDestination(n.addr(t, "udp"))
	for _, h := range []string{"From", "To", "Call-ID"} {
		ack.AppendHeader(sip.HeaderClone(hold.GetHeader(h)))
	}
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: 10, MethodName: sip.ACK})
	_ = room.cli.WriteRequest(ack)
	caller.mu.Lock() // the handler wrote gotHold under this lock
	caller.mu.Unlock()
	if gotHold == nil || !strings.Contains(string(gotHold.Body()), "a=sendonly") {
		t.Fatalf("caller did not get the hold offer: %v", gotHold)
	}
	if res := call.do(sip.BYE, ""); res.StatusCode != 200 {
		t.Fatalf("BYE %d", res.StatusCode)
	}
	room.waitRequest(sip.BYE, 2*time.Second)
}

func headerOf(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// TestCallLimits: a call without SDP is refused when the config says so; a call is ended at the
// maximum duration with that reason.
func TestCallLimits(t *testing.T) {
	cfg := callConfig(t)
	cfg.Calls.RequireSDP = true
	cfg.Calls.MaxDuration = config.Duration(time.Second)
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	caller := newTestUA(t, "caller")
	if c := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", "", nil); c.final == nil || c.final.StatusCode != 488 {
		t.Fatalf("offerless INVITE: %v, want 488", c.final)
	}
	c := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil)
	if c.final == nil || c.final.StatusCode != 200 {
		t.Fatalf("call: %v", c.final)
	}
	c.ack(c.final)
	caller.waitRequest(sip.BYE, 3*time.Second)
	room.waitRequest(sip.BYE, 3*time.Second)
	var rec state.CallRecord
	waitFor(t, func() bool {
		for _, r := range n.Store().State().Records(state.RecordQuery{}) {
			if r.Status == 200 {
				rec = r
				return true
			}
		}
		return false
	})
	if rec.EndReason != "maximum call duration reached" {
		t.Fatalf("record %+v", rec)
	}
	_ = fmt.Sprint
}

// TestRedirectIsAFailure: a far end answering 302 does not send the caller elsewhere (the
// redirect is not followed unless calls.follow_3xx) and its Contact never reaches the caller.
func TestRedirectIsAFailure(t *testing.T) {
	far := newTestUA(t, "far")
	far.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 302, "Moved Temporarily", nil)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "secret-target", Host: "10.1.2.3"}})
		_ = tx.Respond(res)
	})
	cfg := callConfig(t)
	cfg.Calls.DNS = dnsServer(t, []*dns.SRV{{Priority: 10, Weight: 10, Port: uint16(far.port), Target: "far1.far.test."}})
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	c := room.invite(n, sip.Uri{Scheme: "sip", User: "meeting", Host: "far.test"}, "boardroom", cfg.SIP.Domain, testSDP,
		&sipgo.DigestAuth{Username: "boardroom", Password: "s3cret-board"})
	if c.final == nil || c.final.StatusCode != 480 {
		t.Fatalf("got %v, want 480", c.final)
	}
	if strings.Contains(room.seen(), "secret-target") || strings.Contains(room.seen(), "10.1.2.3") {
		t.Fatal("the redirect target reached the caller")
	}
}

// TestSessionTimerEndsVanishedCall: with a short session interval, the node refreshes both legs;
// when the room vanishes (no answer to the refresh) the call is torn down on the caller's side
// too, with that reason in the record.
func TestSessionTimerEndsVanishedCall(t *testing.T) {
	cfg := callConfig(t)
	cfg.Calls.MinSE = config.Duration(time.Second) // below the RFC 4028 floor, for the test only
	cfg.Calls.SessionExpires = config.Duration(2 * time.Second)
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	caller := newTestUA(t, "caller")
	c := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil,
		sip.NewHeader("Supported", "timer"))
	if c.final == nil || c.final.StatusCode != 200 {
		t.Fatalf("call: %v", c.final)
	}
	c.ack(c.final)
	if se := headerOf(c.final, "Session-Expires"); !strings.HasPrefix(se, "2;refresher=uas") {
		t.Fatalf("Session-Expires to the caller: %q", se)
	}
	// the first refresh reaches the room (UPDATE or re-INVITE) and is answered
	waitFor(t, func() bool {
		return strings.Contains(room.seen(), "Session-Expires: 2") && strings.Count(room.seen(), "CSeq: ") >= 3
	})
	room.close() // the room vanishes
	caller.waitRequest(sip.BYE, 10*time.Second)
	var rec state.CallRecord
	waitFor(t, func() bool {
		recs := n.Store().State().Records(state.RecordQuery{})
		if len(recs) == 0 {
			return false
		}
		rec = recs[0]
		return true
	})
	if !strings.Contains(rec.EndReason, "session timer") {
		t.Fatalf("record %+v", rec)
	}
}

package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

type decider struct {
	v   guard.Verdict
	pol guard.CallPolicy
}

func (d decider) CheckCall(*guard.Request, state.Room, bool) (guard.Verdict, guard.CallPolicy) {
	return d.v, d.pol
}

// TestRefusedCalls: each INVITE the engine refuses before making a call gets its status.
func TestRefusedCalls(t *testing.T) {
	for _, tt := range []struct {
		name  string
		room  string
		mod   func(*Config, *Deps)
		body  string
		extra []string
		want  int
	}{
		{name: "unknown room", room: "nobody", body: testSDP, want: 404},
		{name: "not registered", room: "lonely", body: testSDP, want: 480},
		{name: "max-forwards 0", room: "room1", body: testSDP, extra: []string{"Max-Forwards: 0"}, want: 483},
		{name: "session interval too small", room: "room1", body: testSDP, extra: []string{"Session-Expires: 30"},
			mod: func(c *Config, _ *Deps) { c.SessionExpires = 1800 * time.Second }, want: 422},
		{name: "sdp required", room: "room1", mod: func(c *Config, _ *Deps) { c.RequireSDP = true }, want: 488},
		{name: "decider rejects", room: "room1", body: testSDP,
			mod: func(_ *Config, d *Deps) { d.Decider = decider{v: guard.Verdict{Action: guard.Reject, Code: 486}} }, want: 486},
		{name: "decider rejects with no code", room: "room1", body: testSDP,
			mod: func(_ *Config, d *Deps) { d.Decider = decider{v: guard.Verdict{Action: guard.Reject}} }, want: 403},
		{name: "media refuses", room: "room1", body: testSDP,
			mod: func(_ *Config, d *Deps) { d.Media = &fakeMedia{offerErr: media.ErrSourceBusy} }, want: 503},
		{name: "no media ports", room: "room1", body: testSDP,
			mod: func(_ *Config, d *Deps) { d.Media = &fakeMedia{newErr: media.ErrPoolExhausted} }, want: 503},
		{name: "bad offer", room: "room1", body: testSDP,
			mod: func(_ *Config, d *Deps) { d.Media = &fakeMedia{offerErr: errors.New("bad sdp")} }, want: 488},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.mod)
			r.room("room1")
			r.room("lonely")
			a, b := newPhone(t), newPhone(t)
			r.bind("room1", b)
			a.invite(r.addr, tt.room, tt.body, tt.extra...)
			if res := a.final(sip.INVITE); res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.want)
			}
			r.waitIdle()
		})
	}
}

// TestRelayingDenied: an outsider cannot use the node to call a third party.
func TestRelayingDenied(t *testing.T) {
	r := newRig(t, nil)
	a := newPhone(t)
	c := &caller{p: a, to: r.addr, callID: "relay@x", fromTag: "f1", cseq: 1}
	a.send(r.addr, a.build(c, sip.INVITE, "sip:bob@elsewhere.test", "", 1, testSDP))
	if res := a.final(sip.INVITE); res.StatusCode != 403 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

// TestDecisionDropAndQuiet: a dropped call and a quiet call to an unregistered room get no answer.
func TestDecisionDropAndQuiet(t *testing.T) {
	for _, d := range []decider{{v: guard.Verdict{Action: guard.Drop}}, {pol: guard.CallPolicy{Quiet: true}}} {
		r := newRig(t, func(_ *Config, deps *Deps) { deps.Decider = d })
		r.room("lonely")
		a := newPhone(t)
		a.invite(r.addr, "lonely", testSDP)
		// an absence can only be checked over a while: nothing but a 100 Trying may come
		if got := a.finalWithin(sip.INVITE, 500*time.Millisecond); got != nil || r.e.Active() != 0 {
			t.Fatalf("%+v: a call was made", d)
		}
	}
}

// TestTrunkCallEntry: only the edge verifies a trunk signature. A signed INVITE that arrives
// through the plain entry is refused (403), not trusted; one the edge hands to HandleTrunkCall
// rings the room without asking the Decider (the node that handed it over did) and leaves the
// call record to that node.
func TestTrunkCallEntry(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	r := newRig(t, func(_ *Config, d *Deps) { d.Decider = decider{v: guard.Verdict{Action: guard.Reject, Code: 603}} })
	if err := r.store.Propose(context.Background(), state.SetTrunkKey(key)); err != nil {
		t.Fatal(err)
	}
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c := &caller{p: a, to: r.addr, callID: "trunk@x", fromTag: "f1", cseq: 1}
	sig := TrunkHeader + ": " + SignTrunk(key, "n2", c.callID, "room1", time.Now())
	a.send(r.addr, a.build(c, sip.INVITE, "sip:room1@"+testDomain, "", 1, testSDP, sig))
	if res := a.final(sip.INVITE); res.StatusCode != 403 {
		t.Fatalf("signed INVITE through the plain entry: status %d, want 403", res.StatusCode)
	}
	r.mu.Lock()
	r.trunk = "n2"
	r.mu.Unlock()
	c = &caller{p: a, to: r.addr, callID: "trunk2@x", fromTag: "f2", cseq: 1}
	a.send(r.addr, a.build(c, sip.INVITE, "sip:room1@"+testDomain, "", 1, testSDP))
	inv := b.request(sip.INVITE)
	b.reply(inv, 486, "btag", "")
	if res := a.final(sip.INVITE); res.StatusCode != 486 {
		t.Fatalf("trunk call: status %d, want the callee's 486", res.StatusCode)
	}
	r.waitIdle()
	if recs := r.records(); len(recs) != 0 {
		t.Fatalf("a trunk call wrote records here: %+v", recs)
	}
}

// seenDecider records the requests the Decider was asked about.
type seenDecider struct {
	mu   sync.Mutex
	seen []*guard.Request
}

func (d *seenDecider) CheckCall(r *guard.Request, _ state.Room, _ bool) (guard.Verdict, guard.CallPolicy) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = append(d.seen, r)
	return guard.Verdict{Action: guard.Reject, Code: 603}, guard.CallPolicy{}
}

// TestNewCallUsesTheEdgesRequest: the Decider is asked with the very request the edge described
// for the guard (built once), not one the B2BUA builds again; without one (HandleInvite) the
// B2BUA describes the call itself.
func TestNewCallUsesTheEdgesRequest(t *testing.T) {
	d := &seenDecider{}
	r := newRig(t, func(_ *Config, deps *Deps) { deps.Decider = d })
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	a.invite(r.addr, "room1", testSDP)
	if res := a.final(sip.INVITE); res.StatusCode != 603 {
		t.Fatalf("plain entry: status %d, want the Decider's 603", res.StatusCode)
	}
	edge := &guard.Request{CallID: "described by the edge", Registered: true}
	r.mu.Lock()
	r.edge = func(*sip.Request) *guard.Request { return edge }
	r.mu.Unlock()
	a.invite(r.addr, "room1", testSDP)
	if res := a.final(sip.INVITE); res.StatusCode != 603 {
		t.Fatalf("edge entry: status %d, want the Decider's 603", res.StatusCode)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) != 2 || d.seen[0].Method != "INVITE" || d.seen[0].RURIUser != "room1" || d.seen[1] != edge {
		t.Fatalf("the Decider saw %+v", d.seen)
	}
}

// fakeMedia stands for the relay: it tags the SDP it returns with the leg it came from.
type fakeMedia struct {
	newErr, offerErr, answerErr error
	mu                          sync.Mutex
	closed                      int
}

type fakeSession struct{ m *fakeMedia }

func (m *fakeMedia) NewSession(string, func(string)) (Session, error) {
	if m.newErr != nil {
		return nil, m.newErr
	}
	return fakeSession{m}, nil
}

func (s fakeSession) Offer(from media.Leg, body []byte, _ netip.AddrPort) ([]byte, error) {
	if s.m.offerErr != nil {
		return nil, s.m.offerErr
	}
	return append(append([]byte(nil), body...), fmt.Sprintf("a=x-relayed:offer-%d\r\n", from)...), nil
}

func (s fakeSession) Answer(from media.Leg, body []byte, _ netip.AddrPort) ([]byte, error) {
	if s.m.answerErr != nil {
		return nil, s.m.answerErr
	}
	return append(append([]byte(nil), body...), fmt.Sprintf("a=x-relayed:answer-%d\r\n", from)...), nil
}

func (s fakeSession) Close() { s.m.mu.Lock(); s.m.closed++; s.m.mu.Unlock() }

// TestMediaRewritesBothWays: the caller's offer and the callee's answer go through the media
// session, early and final, and the session is closed with the call.
func TestMediaRewritesBothWays(t *testing.T) {
	m := &fakeMedia{}
	r := newRig(t, func(_ *Config, d *Deps) { d.Media = m })
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c := a.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	if !strings.Contains(string(inv.Body()), "offer-") {
		t.Fatalf("leg B offer not relayed: %q", inv.Body())
	}
	b.reply(inv, 183, "bt", testSDP)
	if p := a.response(sip.INVITE, 183); !strings.Contains(string(p.Body()), "answer-") {
		t.Fatalf("early answer not relayed: %q", p.Body())
	}
	b.reply(inv, 200, "bt", testSDP)
	b.request(sip.ACK)
	ok := a.response(sip.INVITE, 200)
	if !strings.Contains(string(ok.Body()), "answer-") {
		t.Fatalf("answer not relayed: %q", ok.Body())
	}
	c.ack(ok)
	c.hangUp(r, b)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed != 1 {
		t.Fatalf("media closed %d times", m.closed)
	}
}

// TestOfferlessInvite: an INVITE without SDP gets the callee's offer in the 200 and its answer
// from the caller's ACK goes to leg B in our ACK.
func TestOfferlessInvite(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c := a.invite(r.addr, "room1", "")
	inv := b.request(sip.INVITE)
	if len(inv.Body()) != 0 {
		t.Fatal("leg B INVITE has a body")
	}
	b.reply(inv, 200, "bt", testSDP)
	ok := a.response(sip.INVITE, 200)
	c.toTag, _ = ok.To().Params.Get("tag")
	a.send(r.addr, a.build(c, sip.ACK, ok.Contact().Address.String(), c.toTag, 1, testSDP))
	if ack := b.request(sip.ACK); len(ack.Body()) == 0 {
		t.Fatal("the caller's answer did not reach leg B")
	}
	c.hangUp(r, b)
}

type observer struct {
	mu       sync.Mutex
	ok, fail int
}

func (o *observer) AuthFailed(netip.AddrPort, string, string) { o.mu.Lock(); o.fail++; o.mu.Unlock() }
func (o *observer) AuthSucceeded(netip.AddrPort, string)      { o.mu.Lock(); o.ok++; o.mu.Unlock() }

type staticResolver struct {
	ts  []target
	err error
}

func (s staticResolver) Resolve(context.Context, sip.Uri) ([]target, error) { return s.ts, s.err }

// TestOutboundCallWithDigest: a room dialling out is challenged (407), a wrong password is
// refused (403, counted), the right one reaches the resolved target; the first target that
// answers 503 fails over to the next.
func TestOutboundCallWithDigest(t *testing.T) {
	far1, far2 := newPhone(t), newPhone(t)
	obs := &observer{}
	res := staticResolver{ts: []target{
		{dest: far1.addr, transport: "UDP", peer: netip.MustParseAddrPort(far1.addr)},
		{dest: far2.addr, transport: "UDP", peer: netip.MustParseAddrPort(far2.addr)},
	}}
	r := outboundRig(t, res, func(_ *Config, d *Deps) { d.Observer = obs })
	a := newPhone(t)
	a.dialOut(r, "out-wrong@x", "sip:bob@far.test", "wrong")
	a.response(sip.INVITE, 403)
	testutil.Eventually(t, "failure counted", func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.fail == 1 })

	c := a.dialOut(r, "out-ok@x", "sip:bob@far.test", "pw")
	far1.reply(far1.request(sip.INVITE), 503, "f1", "")
	inv2 := far2.request(sip.INVITE)
	if inv2.From().Address.User != "room1" || inv2.From().Address.Host != testDomain {
		t.Fatalf("outbound From %s", inv2.From().Value())
	}
	far2.reply(inv2, 200, "f2", testSDP)
	far2.request(sip.ACK)
	c.ack(a.response(sip.INVITE, 200))
	c.hangUp(r, far2)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.ok != 1 {
		t.Fatalf("successes counted %d", obs.ok)
	}
}

// hostResolver resolves by the URI's host.
type hostResolver map[string][]target

func (h hostResolver) Resolve(_ context.Context, u sip.Uri) ([]target, error) { return h[u.Host], nil }

// TestOutboundFollowsRedirect: with Follow3xx, a 302 from the first target sends the call to
// the Contact it names (resolved in turn), and that target's answer is the call's.
func TestOutboundFollowsRedirect(t *testing.T) {
	far1, far2 := newPhone(t), newPhone(t)
	res := hostResolver{
		"far.test":   {{dest: far1.addr, transport: "UDP", peer: netip.MustParseAddrPort(far1.addr)}},
		"moved.test": {{dest: far2.addr, transport: "UDP", peer: netip.MustParseAddrPort(far2.addr)}},
	}
	r := outboundRig(t, res, func(c *Config, _ *Deps) { c.Follow3xx = true })
	a := newPhone(t)
	c := a.dialOut(r, "redirect@x", "sip:bob@far.test", "pw")
	far1.reply(far1.request(sip.INVITE), 302, "f1", "", "Contact: <sip:alice@moved.test>")
	inv2 := far2.request(sip.INVITE)
	if inv2.Recipient.User != "alice" || inv2.Recipient.Host != "moved.test" {
		t.Fatalf("the redirect's target got %s", inv2.Recipient.String())
	}
	far2.reply(inv2, 200, "f2", testSDP)
	far2.request(sip.ACK)
	c.ack(a.response(sip.INVITE, 200))
	c.hangUp(r, far2)
}

// TestOutboundUnresolved: a target that does not resolve gets 404.
func TestOutboundUnresolved(t *testing.T) {
	r := outboundRig(t, staticResolver{err: errors.New("nxdomain")}, nil)
	a := newPhone(t)
	a.dialOut(r, "unres@x", "sip:bob@nowhere.test", "pw")
	a.response(sip.INVITE, 404)
	r.waitIdle()
}

// outboundRig is an engine whose room1 (password "pw") may dial out through res.
func outboundRig(t *testing.T, res Resolver, mod func(*Config, *Deps)) *rig {
	t.Helper()
	auth, err := digest.New(digest.Config{Realm: testDomain, Secret: []byte("0123456789abcdef0123"), Algorithms: []string{digest.MD5}})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *Config, d *Deps) {
		d.Auth, d.Resolver = auth, res
		if mod != nil {
			mod(c, d)
		}
	})
	if err := r.store.Propose(context.Background(), state.PutRoom(state.Room{Name: "room1",
		HA1MD5: digest.HA1(digest.MD5, "room1", testDomain, "pw")})); err != nil {
		t.Fatal(err)
	}
	return r
}

// dialOut calls uri as room1 with password pw: the INVITE, the 407 and its ACK, the INVITE
// with credentials.
func (p *phone) dialOut(r *rig, callID, uri, pw string) *caller {
	p.t.Helper()
	c := &caller{p: p, to: r.addr, callID: callID, fromTag: "ft", cseq: 1}
	send := func(cseq uint32, extra ...string) {
		req := p.build(c, sip.INVITE, uri, "", cseq, testSDP, extra...)
		req.From().Address = sip.Uri{Scheme: "sip", User: "room1", Host: testDomain}
		c.inv, c.cseq = req, cseq
		p.send(r.addr, req)
	}
	send(1)
	ch := p.response(sip.INVITE, 407)
	p.send(r.addr, ackFor(p, ch))
	send(2, "Proxy-Authorization: "+digestAnswer(p.t, ch, "room1", pw, uri))
	return c
}

// ackFor builds the ACK for a non-2xx final response.
func ackFor(p *phone, res *sip.Response) *sip.Request {
	ack := sip.NewRequest(sip.ACK, sip.Uri{Scheme: "sip", User: "bob", Host: "far.test"})
	ack.AppendHeader(sip.HeaderClone(res.Via()))
	ack.AppendHeader(sip.HeaderClone(res.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(res.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: res.CSeq().SeqNo, MethodName: sip.ACK})
	ack.SetBody(nil)
	return ack
}

// digestAnswer answers a 407 challenge as a UA does.
func digestAnswer(t *testing.T, res *sip.Response, user, pw, uri string) string {
	t.Helper()
	h := res.GetHeader("Proxy-Authenticate")
	if h == nil {
		t.Fatal("no Proxy-Authenticate")
	}
	v, err := testutil.DigestAnswer(h.Value(), "INVITE", uri, user, pw)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTrunkSignature: a signed hand-over verifies for its call and room only, and not when stale.
func TestTrunkSignature(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Now()
	v := SignTrunk(key, "n2", "cid", "room1", now)
	if node, ok := VerifyTrunk(key, v, "cid", "room1", now); !ok || node != "n2" {
		t.Fatalf("VerifyTrunk = %q %v", node, ok)
	}
	for _, bad := range []struct{ cid, room string }{{"other", "room1"}, {"cid", "room2"}} {
		if _, ok := VerifyTrunk(key, v, bad.cid, bad.room, now); ok {
			t.Errorf("verified for %+v", bad)
		}
	}
	if _, ok := VerifyTrunk(key, v, "cid", "room1", now.Add(time.Hour)); ok {
		t.Error("stale signature verified")
	}
	if _, ok := VerifyTrunk(key, "garbage", "cid", "room1", now); ok {
		t.Error("garbage verified")
	}
}

// TestCallsEndedByCluster: a call the cluster ended (its record written elsewhere) is hung up
// here without a second record.
func TestCallsEndedByCluster(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	answerCall(t, r, a, b)
	id := r.e.Calls()[0].ID
	if !r.e.Holds(id) {
		t.Fatal("Holds = false")
	}
	r.e.CallsEnded(state.Ended{Records: []state.CallRecord{{Call: state.Call{ID: "other"}}}}) // not ours
	r.e.CallsEnded(state.Ended{Records: []state.CallRecord{{Call: state.Call{ID: id}, EndReason: "ended by admin"}}})
	a.reply(a.request(sip.BYE), 200, "", "")
	b.reply(b.request(sip.BYE), 200, "", "")
	r.waitIdle()
	if n := len(r.records()); n != 0 {
		t.Fatalf("%d records written for a call the cluster recorded", n)
	}
}

// TestFailoverAfterUnsentBranch: a branch whose INVITE could not be sent (no transport for
// it) has no client transaction; when the per-target timer fires before its failure is
// seen, the engine must not touch that missing transaction (it panicked: nil b.tx).
func TestFailoverAfterUnsentBranch(t *testing.T) {
	res := staticResolver{ts: []target{{dest: "127.0.0.1:9", transport: "SCTP"}, {dest: "127.0.0.1:9", transport: "SCTP"}}}
	r := outboundRig(t, res, func(c *Config, _ *Deps) {
		c.TargetTimeout = time.Nanosecond // the timer races the send failure on every call
	})
	a := newPhone(t)
	for i := range 20 {
		a.dialOut(r, fmt.Sprintf("unsent-%d@x", i), "sip:bob@far.test", "pw")
		if got := a.final(sip.INVITE); got.StatusCode < 400 {
			t.Fatalf("call %d: %d", i, got.StatusCode)
		}
	}
	r.waitIdle()
}

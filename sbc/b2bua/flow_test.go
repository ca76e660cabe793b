package b2bua

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// TestForkingFirstAnswerWins: a room with two bindings rings both; the second answers, the
// first gets CANCEL, and the caller gets one 200.
func TestForkingFirstAnswerWins(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b1, b2 := newPhone(t), newPhone(t), newPhone(t)
	r.bind("room1", b1)
	r.bind("room1", b2)
	c := a.invite(r.addr, "room1", testSDP)
	inv1, inv2 := b1.request(sip.INVITE), b2.request(sip.INVITE)
	b1.reply(inv1, 180, "t1", "")
	b2.reply(inv2, 200, "t2", testSDP)
	b2.request(sip.ACK)
	cancel := b1.request(sip.CANCEL)
	b1.reply(cancel, 200, "", "")
	b1.reply(inv1, 487, "t1", "")
	ok := a.response(sip.INVITE, 200)
	c.ack(ok)
	c.hangUp(r, b2)
}

// TestCallerCancelsWhileRinging: the caller's CANCEL cancels leg B and the caller gets 487.
func TestCallerCancelsWhileRinging(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c := a.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	b.reply(inv, 180, "bt", "")
	a.response(sip.INVITE, 180)
	c.cancel()
	a.response(sip.CANCEL, 200)
	cancel := b.request(sip.CANCEL)
	b.reply(cancel, 200, "", "")
	b.reply(inv, 487, "bt", "")
	a.response(sip.INVITE, 487)
	r.waitIdle()
	testutil.Eventually(t, "record", func() bool { return len(r.records()) == 1 })
	if rec := r.records()[0]; rec.Status != 487 {
		t.Fatalf("record %+v", rec)
	}
}

// TestCancelAnswerRace: the callee answers just as the caller cancels: the answer is
// acknowledged and released with BYE on leg B.
func TestCancelAnswerRace(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c := a.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	b.reply(inv, 180, "bt", "")
	a.response(sip.INVITE, 180)
	c.cancel()
	cancel := b.request(sip.CANCEL)
	b.reply(inv, 200, "bt", testSDP) // crossed with the CANCEL
	b.reply(cancel, 481, "", "")
	b.request(sip.ACK)
	b.reply(b.request(sip.BYE), 200, "", "")
	a.response(sip.INVITE, 487)
	r.waitIdle()
}

// TestCalleeBusy: the callee's 486 reaches the caller.
func TestCalleeBusy(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	a.invite(r.addr, "room1", testSDP)
	b.reply(b.request(sip.INVITE), 486, "bt", "")
	b.request(sip.ACK)
	a.response(sip.INVITE, 486)
	r.waitIdle()
}

// TestRingTimeout: an unanswered call is cancelled and the caller gets 408, even when the
// callee never answers the CANCEL.
func TestRingTimeout(t *testing.T) {
	r := newRig(t, func(c *Config, _ *Deps) { c.RingTimeout = 200 * time.Millisecond })
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	a.invite(r.addr, "room1", testSDP)
	b.reply(b.request(sip.INVITE), 180, "bt", "")
	b.request(sip.CANCEL) // not answered
	a.response(sip.INVITE, 408)
	r.waitIdle()
}

// TestReliableProvisionalBothWays: the callee's reliable 183 is PRACKed on leg B, and relayed
// reliably to a caller that supports 100rel, whose PRACK is answered 200; a PRACK for an
// unknown RSeq gets 481.
func TestReliableProvisionalBothWays(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c := a.invite(r.addr, "room1", testSDP, "Supported: 100rel")
	inv := b.request(sip.INVITE)
	if !hasOption(inv, "Supported", "100rel") {
		t.Fatal("leg B INVITE does not offer 100rel")
	}
	b.reply(inv, 183, "bt", testSDP, "Require: 100rel", "RSeq: 7")
	prack := b.request(sip.PRACK)
	if got := headerValue(prack, "RAck"); got != "7 1 INVITE" {
		t.Fatalf("RAck %q", got)
	}
	b.reply(prack, 200, "", "")
	p183 := a.response(sip.INVITE, 183)
	if !hasOption(p183, "Require", "100rel") || headerValue(p183, "RSeq") == "" {
		t.Fatalf("183 to caller not reliable:\n%s", p183)
	}
	c.toTag, _ = p183.To().Params.Get("tag")
	c.inDialog(sip.PRACK, "", "RAck: 99 1 INVITE")
	a.response(sip.PRACK, 481)
	c.inDialog(sip.PRACK, "", "RAck: "+headerValue(p183, "RSeq")+" 1 INVITE")
	a.response(sip.PRACK, 200)
	// before the answer, an UPDATE with an offer meets 491 (RFC 3311 glare rules kept simple)
	c.inDialog(sip.UPDATE, testSDP)
	a.response(sip.UPDATE, 491)
	b.reply(inv, 200, "bt", testSDP)
	b.request(sip.ACK)
	c.ack(a.response(sip.INVITE, 200))
	c.hangUp(r, b)
}

// TestReInviteAndGlare: a re-INVITE crosses to the other leg and its answer comes back; a second
// offer while the first is open gets 491; INFO and OPTIONS are served in the dialog.
func TestReInviteAndGlare(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c, _ := answerCall(t, r, a, b)
	c.inDialog(sip.INVITE, strings.Replace(testSDP, "4000", "4002", 1))
	reinv := b.request(sip.INVITE)
	if !strings.Contains(string(reinv.Body()), "4002") {
		t.Fatalf("re-INVITE body %q", reinv.Body())
	}
	c.inDialog(sip.UPDATE, testSDP) // glare: the re-INVITE is still open
	a.response(sip.UPDATE, 491)
	b.reply(reinv, 200, "", testSDP)
	b.request(sip.ACK)
	ok := a.response(sip.INVITE, 200)
	c.p.send(c.to, c.p.build(c, sip.ACK, ok.Contact().Address.String(), c.toTag, ok.CSeq().SeqNo, ""))

	c.inDialog(sip.INFO, "", "Content-Type: application/dtmf-relay")
	b.reply(b.request(sip.INFO), 200, "", "")
	a.response(sip.INFO, 200)
	c.inDialog(sip.OPTIONS, "")
	a.response(sip.OPTIONS, 200)
	c.hangUp(r, b)
}

// TestSessionTimerEndsCallWhenPeerGone: the engine refreshes both legs; a leg that answers the
// refresh with 481 has lost the dialog and the call is torn down.
func TestSessionTimerEndsCallWhenPeerGone(t *testing.T) {
	r := newRig(t, func(c *Config, _ *Deps) { c.SessionExpires, c.MinSE = 2*time.Second, time.Second })
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c := a.invite(r.addr, "room1", testSDP, "Supported: timer")
	inv := b.request(sip.INVITE)
	if headerValue(inv, "Session-Expires") != "2;refresher=uac" {
		t.Fatalf("Session-Expires %q", headerValue(inv, "Session-Expires"))
	}
	b.reply(inv, 200, "bt", testSDP, "Allow: INVITE, ACK, BYE, UPDATE")
	b.request(sip.ACK)
	ok := a.response(sip.INVITE, 200)
	if !hasOption(ok, "Require", "timer") {
		t.Fatalf("200 without timer:\n%s", ok)
	}
	c.ack(ok)
	// Both legs are refreshed (leg B, which allows UPDATE, with UPDATE; leg A with re-INVITE),
	// one at a time. A refresh answered 481 or not answered ends the call: each phone answers
	// refreshes 481 until its BYE comes.
	for _, p := range []*phone{a, b} {
		for {
			m := p.next("refresh or BYE", func(m sip.Message) bool {
				req, ok := m.(*sip.Request)
				return ok && (req.Method == sip.INVITE || req.Method == sip.UPDATE || req.Method == sip.BYE)
			}).(*sip.Request)
			if m.Method == sip.BYE {
				p.reply(m, 200, "", "")
				break
			}
			if m.Method == sip.UPDATE && m.Body() != nil && len(m.Body()) > 0 {
				t.Errorf("UPDATE refresh carries SDP")
			}
			p.reply(m, 481, "", "")
		}
	}
	r.waitIdle()
	testutil.Eventually(t, "record", func() bool { return len(r.records()) == 1 })
	if rec := r.records()[0]; !strings.HasPrefix(rec.EndReason, "session timer") {
		t.Fatalf("record %+v", rec)
	}
}

// TestDrainWithActiveCall: draining refuses new calls with 503 and, when its deadline passes,
// hangs up the calls still up.
func TestDrainWithActiveCall(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b, late := newPhone(t), newPhone(t), newPhone(t)
	r.bind("room1", b)
	answerCall(t, r, a, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.e.Drain(ctx); close(done) }()
	testutil.Eventually(t, "draining", func() bool { r.e.mu.Lock(); defer r.e.mu.Unlock(); return r.e.draining })
	late.invite(r.addr, "room1", testSDP)
	if res := late.final(sip.INVITE); res.StatusCode != 503 || headerValue(res, "Retry-After") == "" {
		t.Fatalf("INVITE while draining: %d", res.StatusCode)
	}
	cancel()
	a.reply(a.request(sip.BYE), 200, "", "")
	b.reply(b.request(sip.BYE), 200, "", "")
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("Drain did not return")
	}
	if r.e.Active() != 0 {
		t.Fatal("calls left after drain")
	}
}

// TestAdminHangup: Hangup ends an answered call on both legs; Calls and MediaStats see it first.
func TestAdminHangup(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	answerCall(t, r, a, b)
	cs := r.e.Calls()
	if _, ok := r.e.MediaStats(cs[0].ID); !ok {
		t.Fatal("MediaStats: call not found")
	}
	if _, ok := r.e.MediaStats("nope"); ok {
		t.Fatal("MediaStats: unknown call found")
	}
	if err := r.e.Hangup(context.Background(), cs[0].ID); err != nil {
		t.Fatal(err)
	}
	a.reply(a.request(sip.BYE), 200, "", "")
	b.reply(b.request(sip.BYE), 200, "", "")
	r.waitIdle()
	testutil.Eventually(t, "record", func() bool { return len(r.records()) == 1 })
	if rec := r.records()[0]; rec.EndReason != "ended by admin" || rec.State != state.CallEnded {
		t.Fatalf("record %+v", rec)
	}
}

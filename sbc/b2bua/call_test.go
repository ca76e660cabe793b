package b2bua

import (
	"context"
	"errors"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// answerCall rings room on callee from a caller and answers it; both ACKs are exchanged.
func answerCall(t *testing.T, r *rig, a, b *phone) (*caller, *sip.Request) {
	t.Helper()
	c := a.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	b.reply(inv, 180, "btag", "")
	a.response(sip.INVITE, 180)
	b.reply(inv, 200, "btag", testSDP)
	b.request(sip.ACK)
	ok := a.response(sip.INVITE, 200)
	c.ack(ok)
	testutil.Eventually(t, "call answered", func() bool {
		cs := r.e.Calls()
		return len(cs) == 1 && cs[0].State == state.CallAnswered
	})
	return c, inv
}

func TestInboundCallCallerHangsUp(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c, inv := answerCall(t, r, a, b)
	if inv.GetHeader("P-Asserted-Identity") != nil || inv.From().Address.Host != "outside.test" {
		t.Fatalf("leg B From %v", inv.From())
	}
	c.inDialog(sip.BYE, "")
	bye := b.request(sip.BYE)
	b.reply(bye, 200, "", "")
	a.response(sip.BYE, 200)
	r.waitIdle()
	testutil.Eventually(t, "record", func() bool { return len(r.records()) == 1 })
	recs := r.records()
	if recs[0].Status != 200 || recs[0].EndReason != "caller hung up" || recs[0].Room != "room1" {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestInboundCallCalleeHangsUp(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	_, inv := answerCall(t, r, a, b)
	b.callee(inv, "btag").request(sip.BYE, "")
	b.response(sip.BYE, 200)
	bye := a.request(sip.BYE)
	a.reply(bye, 200, "", "")
	r.waitIdle()
	testutil.Eventually(t, "record", func() bool { return len(r.records()) == 1 })
	if rec := r.records()[0]; rec.EndReason != "callee hung up" {
		t.Fatalf("record %+v", rec)
	}
}

// TestHangupUnknownCallIsNotFound: the admin API maps state.ErrNotFound to 404, so a call that
// ended between its lookup and its hangup must say so.
func TestHangupUnknownCallIsNotFound(t *testing.T) {
	r := newRig(t, nil)
	if err := r.e.Hangup(context.Background(), "nope"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("Hangup(unknown) = %v, want state.ErrNotFound", err)
	}
}

// TestByeBeforeAckStopsRetransmission: a caller's BYE that overtakes its ACK (SIPp sends them
// back to back and each is handled in its own goroutine) ends the call; the caller's 2xx is
// not retransmitted after that (it was, every T2 until 64*T1).
func TestByeBeforeAckStopsRetransmission(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b := newPhone(t), newPhone(t)
	r.bind("room1", b)
	c := a.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	b.reply(inv, 200, "btag", testSDP)
	b.request(sip.ACK)
	ok := a.response(sip.INVITE, 200)
	c.toTag, _ = ok.To().Params.Get("tag") // no ACK: the BYE comes first
	c.inDialog(sip.BYE, "")
	bye := b.request(sip.BYE)
	b.reply(bye, 200, "", "")
	a.response(sip.BYE, 200)
	r.waitIdle()
	if res := a.finalWithin(sip.INVITE, 3*sip.T1); res != nil {
		t.Fatalf("the 2xx of the ended call was retransmitted: %d", res.StatusCode)
	}
}

package main

// The caller: places the calls of a run (INVITE with an offer, ACK, media both ways for the
// hold time, BYE).

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

type caller struct {
	*sipSide
	dialogs         *sipgo.DialogClientCache
	eng             *engine
	ports           *portRange
	kinds           []*streamKind
	hold            time.Duration
	edge            netip.AddrPort
	aor, user, pass string

	active, answered, failed atomic.Int64 // progress only
}

type callResult struct {
	ok, byeFailed, remoteBye bool
	reason                   string
	setup                    time.Duration
}

func (c *caller) start() {
	c.dialogs = sipgo.NewDialogClientCache(c.cli, c.contact)
	c.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := c.dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	c.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) { // session refresh: same offer again
		dlg, err := c.dialogs.MatchRequestDialog(req)
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		res := sip.NewSDPResponseFromRequest(req, dlg.InviteRequest.Body())
		res.AppendHeader(&c.contact)
		_ = tx.Respond(res)
	})
	c.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {})
}

// call places one call: INVITE with the offer, ACK, media both ways for hold, then BYE.
func (c *caller) call(ctx context.Context) (res callResult) {
	var eps []*endpoint
	var flows []*flow
	c.active.Add(1)
	defer func() {
		c.active.Add(-1)
		if !res.ok {
			c.failed.Add(1)
		}
		for _, f := range flows {
			f.stop.Store(true)
			<-f.done
		}
		for _, ep := range eps {
			c.eng.release(ep)
		}
	}()
	offer, eps, err := c.openMedia()
	if err != nil {
		slog.Warn("caller: media socket", "err", err)
		res.reason = "tool_media_socket"
		return
	}
	ictx, cancel := context.WithTimeout(ctx, 32*time.Second) // Timer B
	defer cancel()
	dlg, res := c.invite(ictx, offer)
	if dlg == nil {
		return res
	}
	defer dlg.Close()
	if !res.ok {
		return res
	}
	c.answered.Add(1)
	flows = c.startMedia(dlg, eps)
	if !waitHold(dlg, flows) {
		res.remoteBye = true
		return
	}
	bctx, bcancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer bcancel()
	if err := dlg.Bye(bctx); err != nil {
		res.byeFailed = true
		slog.Debug("BYE", "err", err)
	}
	return
}

// openMedia opens one media endpoint per stream kind and returns the offer for them, and the
// endpoints (those opened so far on error, for the caller to release).
func (c *caller) openMedia() (*sdp.SessionDescription, []*endpoint, error) {
	var eps []*endpoint
	offer := newSDP(c.addr.Addr().String())
	for _, k := range c.kinds {
		ep, err := c.ports.open(k)
		if err == nil {
			err = c.eng.watch(ep)
		}
		if err != nil {
			return nil, eps, err
		}
		eps = append(eps, ep)
		m := mediaOffer(k, ep.port)
		m.ConnectionInformation = connInfo(ep)
		offer.MediaDescriptions = append(offer.MediaDescriptions, m)
	}
	return offer, eps, nil
}

// invite sends the INVITE with offer, waits for the answer (answering a digest challenge) and
// ACKs it. The dialog is nil when the INVITE could not be sent; res.ok tells whether the call
// was answered and acknowledged, res.reason why not.
func (c *caller) invite(ctx context.Context, offer *sdp.SessionDescription) (*sipgo.DialogClientSession, callResult) {
	var res callResult
	body, _ := offer.Marshal()
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: c.aor, Host: c.edge.Addr().String(), Port: int(c.edge.Port())})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("User-Agent", "callload"))
	req.SetBody(body)
	sent := time.Now()
	var answered time.Time
	dlg, err := c.dialogs.WriteInvite(ctx, req)
	if err != nil {
		res.reason = "send_error"
		slog.Debug("INVITE", "err", err)
		return nil, res
	}
	err = dlg.WaitAnswer(ctx, sipgo.AnswerOptions{Username: c.user, Password: c.pass,
		OnResponse: func(r *sip.Response) error {
			if r.IsSuccess() && answered.IsZero() {
				answered = time.Now()
			}
			return nil
		}})
	if err != nil {
		var de *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &de):
			res.reason = strconv.Itoa(de.Res.StatusCode)
		case ctx.Err() != nil || errors.Is(err, sip.ErrTransactionTimeout):
			res.reason = "timeout"
		default:
			res.reason = "error"
			slog.Debug("INVITE", "err", err)
		}
		return dlg, res
	}
	res.setup = answered.Sub(sent)
	if err := checkDialogTargets(dlg.InviteResponse); err != nil {
		res.reason = "non_loopback_route"
		slog.Warn("caller: not sending ACK/BYE", "err", err)
		return dlg, res
	}
	if err := dlg.Ack(ctx); err != nil {
		res.reason = "ack_error"
		return dlg, res
	}
	res.ok = true
	return dlg, res
}

// startMedia sends each stream kind from its endpoint in eps to where the answer points it
// (declined or unusable m-lines are skipped) and returns the running flows.
func (c *caller) startMedia(dlg *sipgo.DialogClientSession, eps []*endpoint) []*flow {
	var answer sdp.SessionDescription
	if err := answer.Unmarshal(dlg.InviteResponse.Body()); err != nil {
		slog.Warn("caller: bad SDP answer", "err", err)
	}
	var flows []*flow
	start := nowNs()
	for i, k := range c.kinds {
		if i >= len(answer.MediaDescriptions) {
			break
		}
		md := answer.MediaDescriptions[i]
		dst, err := mediaTarget(&answer, md)
		if err != nil {
			continue // declined or unusable
		}
		if f, err := c.eng.send(eps[i], dst, k, k.pt, start, c.hold); err == nil {
			flows = append(flows, f)
		} else {
			slog.Warn("caller: media", "err", err)
		}
	}
	return flows
}

// waitHold waits for the flows to end (each after hold*pps packets) and then for the drain
// time; it returns false when the far end hung up first.
func waitHold(dlg *sipgo.DialogClientSession, flows []*flow) bool {
	for _, f := range flows {
		select {
		case <-f.done:
		case <-dlg.Context().Done():
			return false
		}
	}
	select {
	case <-time.After(drain):
	case <-dlg.Context().Done():
		return false
	}
	return true
}

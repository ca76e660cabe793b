package sbc

import (
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// TestCallMediaStatsWhileRinging: a room's call out (sip:meeting@far.test, through the 407)
// rings; from the moment it is in the call table, its media streams are read as GET
// /api/v1/calls/{id} reads them (Engine.MediaStats) and the call is finally hung up by the
// admin. Those reads must be safe against the call's own goroutine attaching its media
// session: the endpoint corpus found them racing under -race.
func TestCallMediaStatsWhileRinging(t *testing.T) {
	callerMedia, farMedia := newEndpoint(t, 1), newEndpoint(t, 1)
	release := make(chan struct{})
	far := newTestUA(t, "far")
	far.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		far.answer(req, tx, farMedia.sdp(1, "sendrecv"))
	})
	cfg := callConfig(t)
	cfg.Calls.DNS = dnsServer(t, []*dns.SRV{{Priority: 10, Weight: 10, Port: uint16(far.port), Target: "far1.far.test."}})
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	done := make(chan *testCall, 1)
	go func() {
		done <- room.invite(n, sip.Uri{Scheme: "sip", User: "meeting", Host: "far.test"}, "boardroom", n.cfg.SIP.Domain,
			callerMedia.sdp(1, "sendrecv"), &sipgo.DigestAuth{Username: "boardroom", Password: "s3cret-board"})
	}()
	// Read as fast as an operator's dashboard could, from two goroutines, until the streams
	// show: a read in the instant the session is attached is what races.
	got := make(chan struct{}, 2)
	for range 2 {
		go func() {
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				for _, c := range n.calls.Calls() {
					if st, _ := n.calls.MediaStats(c.ID); st != nil {
						got <- struct{}{}
						return
					}
				}
			}
			got <- struct{}{}
		}()
	}
	<-got
	<-got
	waitUntil(t, 10*time.Second, "the call's media streams", func() bool {
		for _, c := range n.calls.Calls() {
			st, _ := n.calls.MediaStats(c.ID)
			return st != nil
		}
		return false
	})
	close(release)
	call := <-done
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	if res := call.do(sip.BYE, ""); res == nil || res.StatusCode != 200 {
		t.Fatalf("BYE: %v", res)
	}
}

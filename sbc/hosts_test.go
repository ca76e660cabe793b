package sbc

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestRoomByAbsoluteDomain: a Request-URI that writes the domain absolute (a trailing dot, any
// case) names this node for the guard and the B2BUA alike (one siphost.Set, gathered at start),
// so the call rings the room. Before, the guard took the host for ours and the B2BUA's own
// check did not: the caller got 403 Relaying Denied.
func TestRoomByAbsoluteDomain(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	caller := newTestUA(t, "caller")
	u := sip.Uri{Scheme: "sip", User: "boardroom", Host: strings.ToUpper(n.cfg.SIP.Domain) + "."}
	c := caller.invite(n, u, "visitor", "outside.example", testSDP, nil)
	if c.final == nil || c.final.StatusCode != 200 {
		t.Fatalf("call to sip:boardroom@%s: %v, want 200", u.Host, c.final)
	}
	c.ack(c.final)
	if res := c.do(sip.BYE, ""); res == nil || res.StatusCode != 200 {
		t.Fatalf("BYE: %v", res)
	}
}

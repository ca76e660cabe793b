package sbc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Issue #15 items 4, 6, 7 on three in-process nodes.

// followerOf returns a node of nodes that is not the Raft leader.
func followerOf(t *testing.T, nodes []*Node) *Node {
	t.Helper()
	for _, n := range nodes {
		if n.cluster != nil && !n.cluster.IsLeader() {
			return n
		}
	}
	t.Fatal("no follower")
	return nil
}

// registerExpires registers u as room at n with Expires exp (answering the challenge) and
// returns the 200.
func registerExpires(t *testing.T, u *testUA, n *Node, room, password string, exp int) *sip.Response {
	t.Helper()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: n.cfg.SIP.Domain})
	req.SetDestination(n.addr(t, "udp"))
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: room, Host: n.cfg.SIP.Domain}}
	from := &sip.FromHeader{Address: to.Address}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(to)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: room, Host: "127.0.0.1", Port: u.port}})
	req.AppendHeader(sip.NewHeader("Expires", itoa(exp)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := u.cli.Do(ctx, req)
	if err == nil && res.StatusCode == 401 {
		res, err = u.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: room, Password: password})
	}
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("register %s at %s: %v %v", room, n.cfg.Node.ID, err, res)
	}
	return res
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

// contactExpires returns the expires of the 200's Contact for u (-1 when it is not listed).
func contactExpires(res *sip.Response, u *testUA) int {
	port := ":" + itoa(u.port)
	for _, h := range res.GetHeaders("Contact") {
		v := h.Value()
		if !strings.Contains(v, port) {
			continue
		}
		i := strings.Index(v, "expires=")
		if i < 0 {
			return -1
		}
		n := 0
		for _, c := range v[i+len("expires="):] {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	return -1
}

// TestRegisterViaFollowerAnswersWrite (item 4): a REGISTER answered by a follower lists the
// binding it just stored with the expiry granted (RFC 3261 10.3 step 8). Before: the follower
// answered from its state before the write had reached it: the first 200 had no Contact and a
// refresh showed the old remaining expiry.
func TestRegisterViaFollowerAnswersWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	nodes := startCluster(t, haConfig)
	f := followerOf(t, nodes)
	for _, rm := range []struct{ name, pw string }{{"boardroom", "s3cret-board"}, {"room2", "room2-pass"}} {
		room := newTestUA(t, "room")
		name, pw := rm.name, rm.pw
		res := registerExpires(t, room, f, name, pw, 300)
		if got := contactExpires(res, room); got < 295 || got > 300 {
			t.Fatalf("%s: first 200 from follower %s: Contact expires %d, want 300:\n%s", name, f.cfg.Node.ID, got, res)
		}
		res = registerExpires(t, room, f, name, pw, 120)
		if got := contactExpires(res, room); got < 115 || got > 120 {
			t.Fatalf("%s: refresh 200 from follower %s: Contact expires %d, want 120:\n%s", name, f.cfg.Node.ID, got, res)
		}
	}
}

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

// TestCallToRoomOnDeadNode (item 6): a room registered through edge1; edge1 dies. A call
// through edge2 for the room gets 480 with Retry-After at once, once edge1 is seen down,
// rather than being handed to the dead node (the caller waited for a 408: 32 s, or the ring
// timeout).
func TestCallToRoomOnDeadNode(t *testing.T) {
	nodes, _ := haRoomOnEdge1(t)
	n1, n2 := nodes[0], nodes[1]
	n1.Close()
	waitUntil(t, 30*time.Second, "edge1 seen down from edge2", func() bool {
		for _, m := range n2.cluster.Members() {
			if m.ID == "edge1" && !m.Healthy {
				return true
			}
		}
		return false
	})
	waitUntil(t, 30*time.Second, "edge2 to see edge1 down", func() bool { return n2.flowNodeDown("edge1") })
	caller := newTestUA(t, "caller")
	caller.timeout = 40 * time.Second
	start := time.Now()
	call := caller.invite(n2, roomURI(n2, "boardroom"), "visitor", "outside.example", testSDP, nil)
	took := time.Since(start)
	if call.final == nil || call.final.StatusCode != 480 || call.final.GetHeader("Retry-After") == nil {
		t.Fatalf("call to a room whose node is dead: %v after %v, want 480 with Retry-After", call.final, took)
	}
	t.Logf("call to a room whose node is dead: %d with Retry-After %s after %v", call.final.StatusCode,
		call.final.GetHeader("Retry-After").Value(), took.Round(time.Millisecond))
}

// TestDrainRelaysCallsForItsRooms (item 7): edge1 drains while a room is registered only
// through it. A call through edge2 handed to edge1 for that room is still relayed (before: 503,
// and a rolling restart lost calls); the room re-registering on edge1 meanwhile gets the
// shortest expiry; once the room has moved to edge2 the drain goes on and ends.
func TestDrainRelaysCallsForItsRooms(t *testing.T) {
	nodes, room := haRoomOnEdge1(t)
	n1, n2 := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	drained := make(chan time.Time, 1)
	go func() { n1.Drain(ctx); drained <- time.Now() }()
	waitUntil(t, 5*time.Second, "edge1 draining", n1.isDraining)

	caller := newTestUA(t, "caller")
	call := caller.invite(n2, roomURI(n2, "boardroom"), "visitor", "outside.example", testSDP, nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call handed to draining edge1 for its room: %v, want 200", call.final)
	}
	call.ack(call.final)
	room.waitRequest(sip.INVITE, 5*time.Second)
	if res := call.do(sip.BYE, ""); res == nil || res.StatusCode != 200 {
		t.Fatalf("BYE: %v", res)
	}

	res := registerExpires(t, room, n1, "boardroom", "s3cret-board", 300)
	if got := contactExpires(res, room); got < 0 || got > 60 {
		t.Fatalf("room re-registering on draining edge1: Contact expires %d, want at most min_expires 60:\n%s", got, res)
	}
	select {
	case <-drained:
		t.Fatal("the drain ended while the room was registered only on edge1")
	default:
	}

	moved := time.Now()
	registerExpires(t, room, n2, "boardroom", "s3cret-board", 300) // the room moves to edge2
	select {
	case at := <-drained:
		t.Logf("drain ended %v after the room moved", at.Sub(moved).Round(time.Millisecond))
	case <-ctx.Done():
		t.Fatal("the drain did not end after the room moved")
	}
	call2 := newTestUA(t, "caller2").invite(n2, roomURI(n2, "boardroom"), "visitor2", "outside.example", testSDP, nil)
	if call2.final == nil || call2.final.StatusCode != 200 {
		t.Fatalf("call to the moved room: %v", call2.final)
	}
	call2.ack(call2.final)
	call2.do(sip.BYE, "")
}

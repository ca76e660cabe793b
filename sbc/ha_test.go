package sbc

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// What users feel when a node dies (issue #15 items 1-3), on three in-process nodes.

const haToken = "ha-test-admin-token-0123456789abcdef"

// waitUntil polls cond until it holds, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.EventuallyWithin(t, d, what, cond)
}

// haRoomOnEdge1 starts the three-node HA cluster with the room "boardroom" registered through
// edge1 and seen (with its trunk address) on edge2. It skips in -short mode.
func haRoomOnEdge1(t *testing.T) ([]*Node, *testUA) {
	t.Helper()
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	nodes := startCluster(t, haConfig)
	n1, n2 := nodes[0], nodes[1]
	room := newTestUA(t, "room")
	room.register(n1, "boardroom", "s3cret-board")
	waitUntil(t, 5*time.Second, "the binding on edge2", func() bool {
		bs := n2.Store().State().Bindings("boardroom", time.Now())
		return len(bs) == 1 && bs[0].Local != ""
	})
	return nodes, room
}

// adminDo sends method path to the node's admin API at addr with the token.
func adminDo(t *testing.T, addr, method, path string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+haToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func haConfig(t *testing.T) config.Config {
	cfg := callConfig(t)
	cfg.Admin.Token = haToken
	return cfg
}

// TestNodeLostFreesRoom: a room registered through edge1 is called through edge2, which hands
// the call to edge1 over the internal trunk; the call is answered. edge2 dies and the caller
// refuses to be moved to edge1 (a caller that takes it: adopt_test.go). Before: the call
// stayed "answered" in the state forever, the room (drop-in: deny) refused every new call with
// 486 and its leg on edge1 lived until the media timeout. Now, within the detection time, the
// room gets a BYE from edge1, the call has a record "node lost" and the room takes a new call.
func TestNodeLostFreesRoom(t *testing.T) {
	nodes, room := haRoomOnEdge1(t)
	n1, n2 := nodes[0], nodes[1]
	caller := newTestUA(t, "caller")
	call := caller.invite(n2, roomURI(n2, "boardroom"), "visitor", "outside.example", testSDP, nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call through edge2: %v", call.final)
	}
	call.ack(call.final)
	room.waitRequest(sip.INVITE, 5*time.Second)
	waitUntil(t, 5*time.Second, "the answered call in edge1's state", func() bool {
		cs := n1.Store().State().CallsOf("edge2")
		return len(cs) == 1 && cs[0].State == state.CallAnswered
	})

	// edge1 adopts the call when edge2 dies (adopt_test.go); this caller refuses the
	// re-INVITE that would move it, so the call cannot continue and must end.
	caller.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	})
	killed := time.Now()
	n2.Close()
	bye := room.waitRequest(sip.BYE, 20*time.Second) // the detection time is 3 s
	byeAt := time.Since(killed)
	if bye == nil {
		return
	}
	t.Logf("the room got a BYE for its orphaned leg %v after edge2 died", byeAt.Round(time.Millisecond))

	// The room takes a new call (drop-in is denied: a ghost would make this 486).
	waitUntil(t, 10*time.Second, "the room to be free on edge1", func() bool {
		return !n1.Store().State().RoomInCall("boardroom", "") && n1.calls.Active() == 0
	})
	caller2 := newTestUA(t, "caller2")
	call2 := caller2.invite(n1, roomURI(n1, "boardroom"), "visitor2", "outside.example", testSDP, nil)
	if call2.final == nil || call2.final.StatusCode != 200 {
		t.Fatalf("new call to the room after edge2 died: %v", call2.final)
	}
	call2.ack(call2.final)
	t.Logf("a new call to the room was answered %v after edge2 died", time.Since(killed).Round(time.Millisecond))
	recs := n1.Store().State().Records(state.RecordQuery{EndReason: state.ReasonNodeLost})
	if len(recs) != 1 || (recs[0].Node != "edge2" && recs[0].AdoptedFrom != "edge2") || recs[0].Room != "boardroom" {
		t.Fatalf("records %+v, want one %q record of edge2's call", recs, state.ReasonNodeLost)
	}
	if got := len(n1.Store().State().Records(state.RecordQuery{})); got != 1 {
		t.Fatalf("%d records for the lost call", got)
	}
	call2.do(sip.BYE, "")
}

// TestRestartEndsOwnGhosts: a node stops without hanging up its answered call (a crash), and
// restarts within the detection time, so nobody declared it lost. The call is in the state but
// not in the new process: the node ends it (record "node lost") before it says ready, so the
// room is free again and the API does not list a ghost.
func TestRestartEndsOwnGhosts(t *testing.T) {
	cfg := haConfig(t)
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	caller := newTestUA(t, "caller")
	call := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", testSDP, nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	waitUntil(t, 5*time.Second, "the answered call in the state", func() bool {
		return len(n.Store().State().CallsOf("test1")) == 1
	})
	cfg.Cluster.Bind = n.cluster.Addr()
	n.cluster.Close() // the crash: no BYE, no record
	n.Close()

	n = startNode(t, cfg)
	waitUntil(t, 10*time.Second, "the ghost call to end", func() bool {
		return len(n.Store().State().Calls()) == 0
	})
	recs := n.Store().State().Records(state.RecordQuery{})
	if len(recs) != 1 || recs[0].EndReason != state.ReasonNodeLost || recs[0].Node != "test1" {
		t.Fatalf("records %+v, want one %q", recs, state.ReasonNodeLost)
	}
	if n.Store().State().RoomInCall("boardroom", "") {
		t.Fatal("room still in a call after the restart")
	}
}

// TestAPIEndsGhostCalls: DELETE /api/v1/calls/{id} ends a call from any node. Before: 409 on a
// node that does not own it, 500 on the owner when the call was in the state but not in memory.
// Now the call is ended in the state (record "ended by admin") and the owner, when alive, hangs
// up what it still holds. portcullis_calls_active counts what the API lists for the node.
func TestAPIEndsGhostCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	nodes := startCluster(t, haConfig)
	n1, n2 := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now().UTC()
	ghost := func(id, node string) {
		if err := n1.Store().Propose(ctx, state.PutCall(state.Call{ID: id, Room: "room2", Node: node,
			State: state.CallAnswered, Started: now, Answered: now})); err != nil {
			t.Fatal(err)
		}
	}
	ghost("gone-owner", "edge9")  // its owner is not a member (long gone)
	ghost("mine-lost", "edge1")   // owned by edge1, not in its memory
	ghost("mine-remote", "edge1") // the same, ended from edge2
	for _, n := range nodes {
		waitUntil(t, 5*time.Second, "the calls on "+n.cfg.Node.ID, func() bool { return len(n.Store().State().Calls()) == 3 })
	}
	// what the API lists for edge1 and what the metric counts agree
	_, _, body := adminDo(t, n1.AdminAddr(), "GET", "/metrics")
	if got := metric(body, `portcullis_calls_active{state="answered"}`); got != "2" {
		t.Fatalf(`portcullis_calls_active{state="answered"} on edge1 = %q, want 2 (the API lists 2 calls of edge1)`, got)
	}

	for _, c := range []struct {
		node *Node
		id   string
	}{{n2, "gone-owner"}, {n1, "mine-lost"}, {n2, "mine-remote"}} {
		code, _, body := adminDo(t, c.node.AdminAddr(), "DELETE", "/api/v1/calls/"+c.id)
		if code != http.StatusNoContent {
			t.Fatalf("DELETE %s on %s: %d %s", c.id, c.node.cfg.Node.ID, code, body)
		}
	}
	for _, n := range nodes {
		waitUntil(t, 5*time.Second, "the calls to end on "+n.cfg.Node.ID, func() bool { return len(n.Store().State().Calls()) == 0 })
		recs := n.Store().State().Records(state.RecordQuery{EndReason: state.ReasonAdmin})
		if len(recs) != 3 {
			t.Fatalf("%s: %d %q records, want 3", n.cfg.Node.ID, len(recs), state.ReasonAdmin)
		}
	}
	if code, _, body := adminDo(t, n2.AdminAddr(), "DELETE", "/api/v1/calls/gone-owner"); code != http.StatusNotFound {
		t.Fatalf("DELETE of an ended call: %d %s", code, body)
	}
	_, _, body = adminDo(t, n1.AdminAddr(), "GET", "/metrics")
	if got := metric(body, `portcullis_calls_active{state="answered"}`); got != "0" {
		t.Fatalf(`portcullis_calls_active{state="answered"} = %q after the hangups`, got)
	}
}

// partitionNet lets a test cut one node off the cluster network (dials to and from it fail).
type partitionNet struct {
	mu  sync.Mutex
	cut map[string]bool // cluster addresses
}

func (p *partitionNet) dialer(from func() string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		p.mu.Lock()
		cut := p.cut[addr] || p.cut[from()]
		p.mu.Unlock()
		if cut {
			return nil, fmt.Errorf("test partition: %s", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

func (p *partitionNet) set(addr string, cut bool) {
	p.mu.Lock()
	p.cut[addr] = cut
	p.mu.Unlock()
}

// TestNotReadyUntilCaughtUp: edge3 restarts while the cluster wrote on without it (a new room,
// lobby) and cannot reach the others yet. Before: it said ready and answered from its stale
// state (a correct REGISTER got 403 and ten of those banned the room's address as a brute
// forcer). Now, until it has caught up: /readyz 503, SIP 503 with Retry-After, the API 503 with
// a JSON error and Retry-After, and no refusal counted toward a ban. Then it serves normally.
func TestNotReadyUntilCaughtUp(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	pn := &partitionNet{cut: map[string]bool{}}
	var addrMu sync.Mutex
	addrs := map[string]string{} // node -> cluster address
	conf := func(t *testing.T) config.Config { return haConfig(t) }
	start := func(cfg config.Config) *Node {
		t.Helper()
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		n, err := New(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		id := cfg.Node.ID
		n.clusterDial = pn.dialer(func() string { addrMu.Lock(); defer addrMu.Unlock(); return addrs[id] })
		return n
	}
	var nodes []*Node
	run := func(n *Node) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		addrMu.Lock()
		addrs[n.cfg.Node.ID] = n.cluster.Addr()
		addrMu.Unlock()
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	cfg1 := conf(t)
	cfg1.Node.ID = "edge1"
	run(start(cfg1))
	token, err := nodes[0].cluster.JoinToken(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var cfg3 config.Config
	for _, id := range []string{"edge2", "edge3"} {
		cfg := conf(t)
		cfg.Node.ID = id
		cfg.Cluster.Join = []string{nodes[0].cluster.Addr()}
		cfg.Cluster.JoinToken = token
		cfg3 = cfg
		run(start(cfg))
	}
	n1, n3 := nodes[0], nodes[2]
	// edge3 stops; the cluster writes on: a room edge3 has never seen
	cfg3.Cluster.Bind = n3.cluster.Addr()
	cfg3.Cluster.Join, cfg3.Cluster.JoinToken = nil, ""
	cfg3.SIP.Listen = []config.Listen{{Transport: "udp", Addr: n3.Bound()[0].Addr}}
	cfg3.Admin.Listen = n3.AdminAddr()
	n3.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n1.Store().Propose(ctx, state.PutRoom(state.Room{Name: "lobby", Inbound: state.InboundOpen,
		HA1MD5: md5hex("lobby:video.test:lobby-pass"), Updated: time.Now()})); err != nil {
		t.Fatal(err)
	}

	// edge3 restarts cut off from the others: it cannot catch up
	pn.set(cfg3.Cluster.Bind, true)
	n3 = start(cfg3)
	started := make(chan error, 1)
	go func() { started <- n3.Start(context.Background()) }()
	t.Cleanup(func() { n3.Close() })
	admin := cfg3.Admin.Listen
	waitUntil(t, 20*time.Second, "edge3's /readyz to answer", func() bool {
		code, _, _ := adminDo(t, admin, "GET", "/readyz")
		return code != 0
	})
	if code, _, body := adminDo(t, admin, "GET", "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before catching up: %d %s", code, body)
	}
	code, hdr, body := adminDo(t, admin, "GET", "/api/v1/rooms")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, `"error"`) {
		t.Fatalf("API before catching up: %d %v %s", code, hdr, body)
	}
	sipAddr := cfg3.SIP.Listen[0].Addr.String()
	room := newTestUA(t, "lobby")
	for i := range 12 { // more than the guard's auth failure limit
		res := registerAt(t, room, sipAddr, "lobby", "lobby-pass")
		if res == nil || res.StatusCode != 503 || res.GetHeader("Retry-After") == nil {
			t.Fatalf("REGISTER %d before catching up: %v", i, res)
		}
	}

	// edge3 reaches the cluster again: it catches up, then serves
	healed := time.Now()
	pn.set(cfg3.Cluster.Bind, false)
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("edge3 did not finish starting")
	}
	waitUntil(t, 20*time.Second, "edge3 to be ready", func() bool {
		code, _, _ := adminDo(t, admin, "GET", "/readyz")
		return code == http.StatusOK
	})
	t.Logf("edge3 ready %v after it could reach the cluster", time.Since(healed).Round(time.Millisecond))
	if res := registerAt(t, room, sipAddr, "lobby", "lobby-pass"); res == nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER after catching up: %v", res)
	}
	for _, n := range []*Node{n1, n3} {
		if bans := n.Store().State().Bans(time.Now()); len(bans) != 0 {
			t.Fatalf("%s: bans %+v: refusals while not ready counted toward a ban", n.cfg.Node.ID, bans)
		}
	}
	if c := n3.guard.Counts(); c[guard.RuleBruteForce] != 0 {
		t.Fatalf("guard counted %v", c)
	}
}

// registerAt registers the UA as room at a SIP address, answering a digest challenge; it
// returns the final response (nil when none came).
func registerAt(t *testing.T, u *testUA, addr, room, password string) *sip.Response {
	t.Helper()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "video.test"})
	req.SetDestination(addr)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: room, Host: "video.test"}}
	from := &sip.FromHeader{Address: to.Address}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(to)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: room, Host: "127.0.0.1", Port: u.port}})
	req.AppendHeader(sip.NewHeader("Expires", "300"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := u.cli.Do(ctx, req)
	if err == nil && res.StatusCode == 401 {
		res, err = u.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: room, Password: password})
	}
	if err != nil {
		return nil
	}
	return res
}

package sbc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/sbc/b2bua"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// Calls adopted when their node dies (issue #15, moonshot): a survivor re-INVITEs both legs of
// each call toward its own relay and the media resumes.

// rtpSide is one end of a call's media: it sends RTP every 20 ms to where the last SDP it got
// points, and notes when the packets it receives start coming from a new source (a relay on
// another node) and how long nothing came before that.
type rtpSide struct {
	conn *net.UDPConn
	addr netip.AddrPort

	mu       sync.Mutex
	remote   netip.AddrPort
	last     time.Time
	src      netip.AddrPort
	fromSrc  int           // packets from src since it became the source
	switches int           // times the source changed
	gap      time.Duration // silence before the last change of source
	maxGap   time.Duration // longest silence between two packets
	origins  []string      // the o= lines of the SDPs it followed, in order
}

func newRTPSide(t *testing.T, ip netip.Addr) *rtpSide {
	t.Helper()
	ep := testutil.NewEndpoint(t, ip)
	s := &rtpSide{conn: ep.Conn, addr: ep.Addr()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); _ = s.conn.SetReadDeadline(time.Now()); wg.Wait() })
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		ssrc := uint32(s.addr.Port())
		for seq := uint16(0); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s.mu.Lock()
			to := s.remote
			s.mu.Unlock()
			if to.IsValid() {
				_, _ = s.conn.WriteToUDPAddrPort(testutil.RTP(0, seq, uint32(seq)*160, ssrc, "media"), to)
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for ctx.Err() == nil {
			_, src, err := s.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				continue
			}
			now := time.Now()
			s.mu.Lock()
			if src != s.src {
				if s.src.IsValid() {
					s.switches++
					s.gap = now.Sub(s.last)
				}
				s.src, s.fromSrc = src, 0
			}
			s.fromSrc++
			if !s.last.IsZero() {
				s.maxGap = max(s.maxGap, now.Sub(s.last))
			}
			s.last = now
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *rtpSide) sdp() string {
	return fmt.Sprintf("v=0\r\no=ua 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
		s.addr.Addr(), s.addr.Addr(), s.addr.Port())
}

// follow points the RTP at the audio address of an SDP body.
func (s *rtpSide) follow(body []byte) {
	var ip netip.Addr
	port := 0
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		if a, ok := strings.CutPrefix(l, "c=IN IP4 "); ok {
			ip, _ = netip.ParseAddr(a)
		}
		if m, ok := strings.CutPrefix(l, "m=audio "); ok {
			port, _ = strconv.Atoi(strings.Fields(m)[0])
		}
		if o, ok := strings.CutPrefix(l, "o="); ok {
			s.mu.Lock()
			s.origins = append(s.origins, o)
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	s.remote = netip.AddrPortFrom(ip, uint16(port))
	s.mu.Unlock()
}

// checkOrigins: the SDP that moved the media continues the session this side saw (RFC 3264
// section 8): the same o= username and session id, a higher version.
func (s *rtpSide) checkOrigins(t *testing.T, who string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.origins) < 2 {
		t.Fatalf("%s followed %d SDPs, want the first and the move", who, len(s.origins))
	}
	first, last := strings.Fields(s.origins[0]), strings.Fields(s.origins[len(s.origins)-1])
	v0, _ := strconv.ParseUint(first[2], 10, 64)
	v1, _ := strconv.ParseUint(last[2], 10, 64)
	if first[0] != last[0] || first[1] != last[1] || v1 <= v0 {
		t.Fatalf("%s: o= went from %q to %q: want the same session, a higher version", who, s.origins[0], s.origins[len(s.origins)-1])
	}
}

// receiving reports whether at least n packets came from the current source, which is where
// this side sends (the relay's port its last SDP named: the relay is symmetric), and from a
// source other than the first one when moved.
func (s *rtpSide) receiving(n int, moved bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fromSrc >= n && s.src == s.remote && (!moved || s.switches > 0)
}

// adoptedCall is one call of the test: a caller and a room, each with its media.
type adoptedCall struct {
	caller, room         *testUA
	call                 *testCall
	callerRTP, roomRTP   *rtpSide
	mu                   sync.Mutex
	contact              sip.Uri // the caller's remote target, moved by a re-INVITE
	reinvited, roomMoved bool
}

// answerFollowing answers INVITEs (the first and re-INVITEs) with side's SDP after pointing its
// RTP at the offer; on moved it notes a re-INVITE's Contact.
func answerFollowing(u *testUA, side *rtpSide, moved func(req *sip.Request)) {
	u.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		side.follow(req.Body())
		if req.To().Params.Has("tag") && moved != nil {
			moved(req)
		}
		u.answer(req, tx, side.sdp())
	})
}

// adoptCluster starts three nodes with rooms adopt00.. (one per call) and lostAfter as the
// detection time; b is a member that does not lead (the one that dies or drains).
func adoptCluster(t *testing.T, calls int, lostAfter time.Duration) (nodes []*Node, b *Node, survivors []*Node) {
	t.Helper()
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	nodes = startCluster(t, func(t *testing.T) config.Config {
		cfg := haConfig(t)
		cfg.Cluster.NodeLostAfter = config.Duration(lostAfter)
		for i := range calls {
			cfg.Rooms = append(cfg.Rooms, config.Room{Name: fmt.Sprintf("adopt%02d", i), Password: "adopt-pass", Inbound: "open"})
		}
		return cfg
	})
	leader, _ := nodes[0].cluster.Leader()
	b = nodes[1]
	if leader == b.cfg.Node.ID {
		b = nodes[2]
	}
	for _, n := range nodes {
		if n != b {
			survivors = append(survivors, n)
		}
	}
	return nodes, b, survivors
}

// startAdoptedCalls makes n calls through node b (callers and rooms on b) with RTP both ways
// and waits for the media and for the calls in the survivors' state.
func startAdoptedCalls(t *testing.T, b, survivor *Node, n int) []*adoptedCall {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	cs := make([]*adoptedCall, n)
	for i := range cs {
		name := fmt.Sprintf("adopt%02d", i)
		c := &adoptedCall{caller: newTestUA(t, "caller"+name), room: newTestUA(t, name),
			callerRTP: newRTPSide(t, lo), roomRTP: newRTPSide(t, lo)}
		answerFollowing(c.room, c.roomRTP, func(*sip.Request) {
			c.mu.Lock()
			c.roomMoved = true
			c.mu.Unlock()
		})
		answerFollowing(c.caller, c.callerRTP, func(req *sip.Request) {
			c.mu.Lock()
			c.contact, c.reinvited = req.Contact().Address, true
			c.mu.Unlock()
		})
		c.room.register(b, name, "adopt-pass")
		c.call = c.caller.invite(b, roomURI(b, name), "visitor", "outside.example", c.callerRTP.sdp(), nil)
		if c.call.final == nil || c.call.final.StatusCode != 200 {
			t.Fatalf("call %d through %s: %v", i, b.cfg.Node.ID, c.call.final)
		}
		c.call.ack(c.call.final)
		c.callerRTP.follow(c.call.final.Body())
		cs[i] = c
	}
	testutil.Eventually(t, "media both ways on every call", func() bool {
		for _, c := range cs {
			if !c.callerRTP.receiving(10, false) || !c.roomRTP.receiving(10, false) {
				return false
			}
		}
		return true
	})
	testutil.Eventually(t, "every call answered in the survivors' state", func() bool {
		return len(survivor.Store().State().CallsOf(b.cfg.Node.ID)) == n
	})
	return cs
}

// awaitResumed waits until every call's media comes both ways from a new relay and returns the
// RTP gaps of all directions, sorted.
func awaitResumed(t *testing.T, cs []*adoptedCall) []time.Duration {
	t.Helper()
	testutil.EventuallyWithin(t, 60*time.Second, "media to resume both ways on every call", func() bool {
		for _, c := range cs {
			if !c.callerRTP.receiving(10, true) || !c.roomRTP.receiving(10, true) {
				return false
			}
		}
		return true
	})
	var gaps []time.Duration
	for _, c := range cs {
		for _, s := range []*rtpSide{c.callerRTP, c.roomRTP} {
			s.mu.Lock()
			gaps = append(gaps, s.gap)
			s.mu.Unlock()
		}
	}
	slices.Sort(gaps)
	return gaps
}

// checkAdopted checks that the survivors own every call, adopted from b, and returns each
// call's owner.
func checkAdopted(t *testing.T, b *Node, survivors []*Node, cs []*adoptedCall) map[string]*Node {
	t.Helper()
	owners := map[string]*Node{}
	for _, n := range survivors {
		for _, sc := range n.Store().State().Calls() {
			if sc.AdoptedFrom != b.cfg.Node.ID || sc.Node == b.cfg.Node.ID {
				t.Fatalf("call %+v: want it adopted from %s", sc, b.cfg.Node.ID)
			}
			for _, o := range survivors {
				if o.cfg.Node.ID == sc.Node {
					owners[sc.ID] = o
				}
			}
		}
	}
	if len(owners) != len(cs) {
		t.Fatalf("%d calls owned by survivors, want %d", len(owners), len(cs))
	}
	for _, c := range cs {
		c.callerRTP.checkOrigins(t, "caller")
		c.roomRTP.checkOrigins(t, "room")
	}
	// the replicated SDPs (SRTP keys, when the peers use SDES) stay inside the cluster
	if code, _, body := adminDo(t, survivors[0].admin.Addr().String(), http.MethodGet, "/api/v1/calls"); code != 200 ||
		strings.Contains(body, "v=0") || strings.Contains(body, `"target"`) {
		t.Fatalf("GET /api/v1/calls: %d, with the calls' SDP or dialog state: %s", code, body)
	}
	return owners
}

// endAdopted ends one call through the admin API of its new owner and the others by their
// callers' BYE to the survivor; each room gets a BYE, each call a record naming its adopter.
func endAdopted(t *testing.T, b *Node, survivors []*Node, cs []*adoptedCall, owners map[string]*Node) {
	t.Helper()
	var adminID string
	for id := range owners {
		adminID = id
		break
	}
	if code, _, body := adminDo(t, owners[adminID].admin.Addr().String(), http.MethodDelete, "/api/v1/calls/"+adminID); code/100 != 2 {
		t.Fatalf("DELETE adopted call on its owner: %d %s", code, body)
	}
	for i, c := range cs {
		c.mu.Lock()
		contact, ok := c.contact, c.reinvited && c.roomMoved
		c.mu.Unlock()
		if !ok {
			t.Fatalf("call %d: both legs must have been re-INVITEd", i)
		}
		if res := c.byeTo(t, contact); res.StatusCode != 200 && res.StatusCode != 481 {
			t.Fatalf("call %d: BYE to the survivor: %d", i, res.StatusCode)
		}
		c.room.waitRequest(sip.BYE, 10*time.Second)
	}
	testutil.Eventually(t, "a record for every adopted call", func() bool {
		n := 0
		for _, r := range survivors[0].Store().State().Records(state.RecordQuery{}) {
			if r.AdoptedFrom == b.cfg.Node.ID && r.Node != b.cfg.Node.ID && r.EndReason != state.ReasonNodeLost {
				n++
			}
			if r.A.SDP != "" || r.B.SDP != "" || r.A.Target != "" {
				t.Fatalf("record %s keeps the dialog state replicated for adoption", r.ID)
			}
		}
		return n == len(cs) && len(survivors[0].Store().State().Calls()) == 0
	})
}

// TestCallsAdoptedWhenNodeDies: 20 calls with RTP both ways through node B (callers and rooms
// on B); B dies without a word (sockets closed, no BYE, no leave). Before: every call ended
// with "node lost" and its media stopped. Now every call's media resumes both ways through a
// survivor (which re-INVITEs both legs), the survivor owns the call in the state, and the
// caller's BYE to the survivor (or the admin API of the survivor) ends it with a record naming
// the survivor and B. The RTP gap is logged (median and max), never asserted.
func TestCallsAdoptedWhenNodeDies(t *testing.T) {
	const calls = 20
	lostAfter := 1500 * time.Millisecond
	_, b, survivors := adoptCluster(t, calls, lostAfter)
	cs := startAdoptedCalls(t, b, survivors[0], calls)
	killed := time.Now()
	b.Close() // kill -9: sockets closed, no BYE, no leave
	gaps := awaitResumed(t, cs)
	t.Logf("%d of %d calls resumed through a survivor %v after %s died (node_lost_after %v); RTP gap over %d directions: median %v, max %v",
		calls, calls, time.Since(killed).Round(time.Millisecond), b.cfg.Node.ID, lostAfter, len(gaps),
		gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
	owners := checkAdopted(t, b, survivors, cs)
	endAdopted(t, b, survivors, cs, owners)
}

// TestDrainHandsCallsOver: a node that drains (rolling restart) hands its answered calls to
// the other members before it stops. Before: it waited for them to end, then hung them up at
// the drain timeout. Now each call's media moves to a survivor (both legs re-INVITEd), nobody
// gets a BYE, the drain ends once the rooms have moved, and the calls end later on the
// survivors with records.
func TestDrainHandsCallsOver(t *testing.T) {
	const calls = 4
	_, b, survivors := adoptCluster(t, calls, 1500*time.Millisecond)
	cs := startAdoptedCalls(t, b, survivors[0], calls)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drained := make(chan struct{})
	go func() { b.Drain(ctx); close(drained) }()
	gaps := awaitResumed(t, cs)
	t.Logf("%d calls handed over %v after the drain began; RTP gap median %v, max %v", calls,
		time.Since(start).Round(time.Millisecond), gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
	for i, c := range cs { // the rooms move too (the drain waits for that, not for the calls)
		c.room.register(survivors[0], fmt.Sprintf("adopt%02d", i), "adopt-pass")
	}
	testutil.Eventually(t, "the drain to end without waiting for the calls", func() bool {
		select {
		case <-drained:
			return true
		default:
			return false
		}
	})
	owners := checkAdopted(t, b, survivors, cs)
	for i, c := range cs {
		if strings.Contains(c.room.seen(), "BYE sip:") || strings.Contains(c.caller.seen(), "BYE sip:") {
			t.Fatalf("call %d: a BYE during the hand-over", i)
		}
	}
	if n := counterValue(t, b, "portcullis_calls_handed_over_total", ""); n != calls {
		t.Fatalf("portcullis_calls_handed_over_total on the draining node = %v, want %d", n, calls)
	}
	testutil.Eventually(t, "every adoption counted as resumed", func() bool {
		var resumed, ended float64
		for _, s := range survivors {
			resumed += counterValue(t, s, "portcullis_calls_adopted_total", "resumed")
			ended += counterValue(t, s, "portcullis_calls_adopted_total", "ended")
		}
		return resumed == calls && ended == 0
	})
	endAdopted(t, b, survivors, cs, owners)
}

// counterValue reads counter name of node n's metrics (the one whose result label is result,
// when given); 0 when absent.
func counterValue(t *testing.T, n *Node, name, result string) float64 {
	t.Helper()
	mfs, err := n.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := result == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// byeTo sends the caller's BYE to the remote target a re-INVITE gave it.
func (c *adoptedCall) byeTo(t *testing.T, target sip.Uri) *sip.Response {
	t.Helper()
	req := sip.NewRequest(sip.BYE, target)
	req.SetDestination(net.JoinHostPort(target.Host, strconv.Itoa(target.Port)))
	req.AppendHeader(sip.HeaderClone(c.call.invite.From()))
	req.AppendHeader(sip.HeaderClone(c.call.final.To()))
	req.AppendHeader(sip.HeaderClone(c.call.invite.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: c.call.cseq + 1, MethodName: sip.BYE})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.caller.cli.Do(ctx, req)
	if err != nil {
		t.Fatalf("BYE: %v", err)
	}
	return res
}

// trunkCallRig starts three nodes and makes a call to a room registered through
// nodes[roomAt], placed through nodes[callerAt], which hands it over the internal trunk; it
// waits for RTP both ways and for the call (with the room's leg) in the state.
func trunkCallRig(t *testing.T, roomAt, callerAt int) ([]*Node, *adoptedCall) {
	t.Helper()
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	nodes := startCluster(t, func(t *testing.T) config.Config {
		cfg := haConfig(t)
		cfg.Cluster.NodeLostAfter = config.Duration(1500 * time.Millisecond)
		return cfg
	})
	rn, cn := nodes[roomAt], nodes[callerAt]
	lo := netip.MustParseAddr("127.0.0.1")
	c := &adoptedCall{caller: newTestUA(t, "caller"), room: newTestUA(t, "room"), callerRTP: newRTPSide(t, lo), roomRTP: newRTPSide(t, lo)}
	answerFollowing(c.room, c.roomRTP, func(*sip.Request) {
		c.mu.Lock()
		c.roomMoved = true
		c.mu.Unlock()
	})
	answerFollowing(c.caller, c.callerRTP, func(req *sip.Request) {
		c.mu.Lock()
		c.contact, c.reinvited = req.Contact().Address, true
		c.mu.Unlock()
	})
	c.room.register(rn, "boardroom", "s3cret-board")
	testutil.Eventually(t, "the binding on the caller's node", func() bool {
		bs := cn.Store().State().Bindings("boardroom", time.Now())
		return len(bs) == 1 && bs[0].Local != ""
	})
	c.call = c.caller.invite(cn, roomURI(cn, "boardroom"), "visitor", "outside.example", c.callerRTP.sdp(), nil)
	if c.call.final == nil || c.call.final.StatusCode != 200 {
		t.Fatalf("call through %s: %v", cn.cfg.Node.ID, c.call.final)
	}
	if c.call.final.GetHeader(b2bua.FarHeader) != nil {
		t.Fatal("the room's leg state leaked to the caller")
	}
	c.call.ack(c.call.final)
	c.callerRTP.follow(c.call.final.Body())
	testutil.Eventually(t, "media both ways", func() bool {
		cs := cn.Store().State().CallsOf(cn.cfg.Node.ID)
		return c.callerRTP.receiving(10, false) && c.roomRTP.receiving(10, false) && len(cs) == 1 && cs[0].Far.SDP != ""
	})
	return nodes, c
}

// resumedAfter reports whether the side, whose source did not change, got packets again after
// the longest silence since killed began.
func (s *rtpSide) resumedAfter(killed time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.After(killed.Add(s.maxGap))
}

func (s *rtpSide) gaps() (last, longest time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gap, s.maxGap
}

// TestTrunkCallAdoptedWhenCallerNodeDies: a room registered through edge1 is called through
// edge2, which hands the call over the internal trunk; RTP flows both ways through both
// relays. edge2 dies without a word. Before: edge1 hung up the room (record "node lost").
// Now edge1 keeps its leg and relay toward the room and re-INVITEs the caller toward its own
// relay: media resumes both ways, the room sees no request at all, and the caller's BYE to
// edge1 ends the call with a record naming edge1 and edge2.
func TestTrunkCallAdoptedWhenCallerNodeDies(t *testing.T) {
	nodes, c := trunkCallRig(t, 0, 1)
	n1, n2 := nodes[0], nodes[1]
	c.roomRTP.mu.Lock()
	c.roomRTP.maxGap = 0
	c.roomRTP.mu.Unlock()
	killed := time.Now()
	n2.Close() // kill -9
	testutil.EventuallyWithin(t, 60*time.Second, "media to resume both ways", func() bool {
		return c.roomRTP.resumedAfter(killed) && c.callerRTP.receiving(10, true)
	})
	c.mu.Lock()
	contact, reinvited, roomMoved := c.contact, c.reinvited, c.roomMoved
	c.mu.Unlock()
	_, roomGap := c.roomRTP.gaps()
	callerGap, _ := c.callerRTP.gaps()
	t.Logf("trunk call resumed %v after edge2 died; RTP gap toward the caller %v, toward the room %v",
		time.Since(killed).Round(time.Millisecond), callerGap.Round(time.Millisecond), roomGap.Round(time.Millisecond))
	if !reinvited || roomMoved {
		t.Fatalf("caller re-INVITEd %v (want true), room re-INVITEd %v (want false)", reinvited, roomMoved)
	}
	c.callerRTP.checkOrigins(t, "caller")
	cs := n1.Store().State().Calls()
	if len(cs) != 1 || cs[0].Node != "edge1" || cs[0].AdoptedFrom != "edge2" {
		t.Fatalf("calls after edge2 died: %+v, want one owned by edge1, adopted from edge2", cs)
	}
	if res := c.byeTo(t, contact); res.StatusCode != 200 {
		t.Fatalf("BYE to edge1: %d", res.StatusCode)
	}
	c.room.waitRequest(sip.BYE, 10*time.Second)
	awaitAdoptedRecord(t, n1, "edge1", "edge2")
}

// awaitAdoptedRecord waits for the one call's record on n: ended by its peers, by node, adopted
// from lost; and for no call left.
func awaitAdoptedRecord(t *testing.T, n *Node, node, lost string) {
	t.Helper()
	testutil.Eventually(t, "the adopted call's record", func() bool {
		recs := n.Store().State().Records(state.RecordQuery{})
		return len(recs) == 1 && recs[0].Node == node && recs[0].AdoptedFrom == lost &&
			recs[0].EndReason != state.ReasonNodeLost && len(n.Store().State().Calls()) == 0 && n.calls.Active() == 0
	})
}

// TestRoomLegAdoptedWhenRoomNodeDies: a room registered through edge3 is called through edge2,
// which hands the call over the internal trunk to edge3; RTP flows both ways. edge3 (the room's
// node) dies without a word. Before: edge2 hung up the caller (record "node lost"). Now edge2,
// which replicated edge3's leg toward the room with the call, re-INVITEs the room toward its
// own relay: media resumes both ways, the caller sees no request, and the caller's BYE ends
// the call with a record naming edge2 and edge3.
func TestRoomLegAdoptedWhenRoomNodeDies(t *testing.T) {
	nodes, c := trunkCallRig(t, 2, 1)
	n2, n3 := nodes[1], nodes[2]
	c.callerRTP.mu.Lock()
	c.callerRTP.maxGap = 0
	c.callerRTP.mu.Unlock()
	killed := time.Now()
	n3.Close() // kill -9
	testutil.EventuallyWithin(t, 60*time.Second, "media to resume both ways", func() bool {
		return c.callerRTP.resumedAfter(killed) && c.roomRTP.receiving(10, true)
	})
	c.mu.Lock()
	reinvited, roomMoved := c.reinvited, c.roomMoved
	c.mu.Unlock()
	_, callerGap := c.callerRTP.gaps()
	roomGap, _ := c.roomRTP.gaps()
	t.Logf("room leg resumed %v after edge3 died; RTP gap toward the caller %v, toward the room %v",
		time.Since(killed).Round(time.Millisecond), callerGap.Round(time.Millisecond), roomGap.Round(time.Millisecond))
	if reinvited || !roomMoved {
		t.Fatalf("caller re-INVITEd %v (want false), room re-INVITEd %v (want true)", reinvited, roomMoved)
	}
	c.roomRTP.checkOrigins(t, "room")
	cs := n2.Store().State().Calls()
	if len(cs) != 1 || cs[0].Node != "edge2" || cs[0].AdoptedFrom != "edge3" || cs[0].B.Node != "edge2" {
		t.Fatalf("calls after edge3 died: %+v, want one owned by edge2 with its room leg, adopted from edge3", cs)
	}
	if res := c.byeTo(t, c.call.final.Contact().Address); res.StatusCode != 200 {
		t.Fatalf("BYE to edge2: %d", res.StatusCode)
	}
	c.room.waitRequest(sip.BYE, 10*time.Second)
	awaitAdoptedRecord(t, n2, "edge2", "edge3")
}

// TestAdoptionRefusedEndsCall: node B dies with three calls. The caller of the first refuses
// the survivor's re-INVITE (481), the room of the second too; the third resumes. The two
// refused calls end at once: the other side gets a BYE, the record says "node lost" and names
// the adopter and B, and the rooms are free again (no 486 lock-out).
func TestAdoptionRefusedEndsCall(t *testing.T) {
	_, b, survivors := adoptCluster(t, 3, 1500*time.Millisecond)
	cs := startAdoptedCalls(t, b, survivors[0], 3)
	refuse := func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	}
	cs[0].caller.handleInvite(refuse)
	cs[1].room.handleInvite(refuse)
	b.Close() // kill -9
	awaitResumed(t, cs[2:])
	cs[0].room.waitRequest(sip.BYE, 30*time.Second)
	cs[1].caller.waitRequest(sip.BYE, 30*time.Second)
	st := survivors[0].Store().State()
	testutil.Eventually(t, "the refused calls' records", func() bool {
		recs := st.Records(state.RecordQuery{EndReason: state.ReasonNodeLost})
		for _, r := range recs {
			if r.AdoptedFrom != b.cfg.Node.ID || r.Node == b.cfg.Node.ID {
				t.Fatalf("record %+v: want it to name the adopter and %s", r, b.cfg.Node.ID)
			}
		}
		return len(recs) == 2 && len(st.Calls()) == 1 && !st.RoomInCall("adopt00", "") && !st.RoomInCall("adopt01", "")
	})
}

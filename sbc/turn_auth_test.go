package sbc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
	"github.com/pion/stun/v2"
	pturn "github.com/pion/turn/v3"

	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// Attacks of issue #14 items 2, 5 and 10, from outside, on a running node.

// turnConfig is testConfig with a UDP TURN listener on 127.0.0.1.
func turnConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.TURN.Listen = []config.Listen{{Transport: "udp", Addr: netip.MustParseAddrPort("127.0.0.1:0")}}
	cfg.Media.Advertise = netip.MustParseAddr("127.0.0.1")
	return cfg
}

// udpFrom opens a UDP socket on ip (any 127.x.y.z), port chosen by the kernel.
func udpFrom(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// stunRoundTrip sends a STUN message and returns the answer, or nil after wait.
func stunRoundTrip(t *testing.T, c *net.UDPConn, to net.Addr, m *stun.Message, wait time.Duration) *stun.Message {
	t.Helper()
	if _, err := c.WriteTo(m.Raw, to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(wait)
	for {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return nil
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if res.Decode() == nil && res.TransactionID == m.TransactionID {
			return res
		}
	}
}

// allocateRequest is a TURN Allocate request (UDP transport), authenticated when key is set.
func allocateRequest(t *testing.T, user, realm, nonce string, key []byte) *stun.Message {
	t.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Length: 4, Value: []byte{17, 0, 0, 0}}}
	if key != nil {
		setters = append(setters, stun.NewUsername(user), stun.NewRealm(realm), stun.NewNonce(nonce), stun.MessageIntegrity(key))
	}
	setters = append(setters, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// turnNonce asks for a nonce with an unauthenticated Allocate (the 401 carries realm and nonce).
func turnNonce(t *testing.T, c *net.UDPConn, to net.Addr) (realm, nonce string) {
	t.Helper()
	res := stunRoundTrip(t, c, to, allocateRequest(t, "", "", "", nil), 2*time.Second)
	if res == nil {
		t.Fatal("no answer to an unauthenticated Allocate")
	}
	var r stun.Realm
	var n stun.Nonce
	if r.GetFrom(res) != nil || n.GetFrom(res) != nil {
		t.Fatalf("401 without realm or nonce: %v", res)
	}
	return r.String(), n.String()
}

func isSuccess(m *stun.Message) bool { return m != nil && m.Type.Class == stun.ClassSuccessResponse }

// TestTURNAllocateGuessesBanSource (issue #14 item 2): 2,000 Allocate guesses at a room's
// password from one source end in a brute-force ban after guard.auth_failures, with the
// event and portcullis_turn_auth_failures_total; the right password, guessed last, never
// gets an allocation. The room's SIP password is a TURN key here only because
// turn.sip_credentials is on (the legacy switch); the attack is the same against any
// long-term credential.
func TestTURNAllocateGuessesBanSource(t *testing.T) {
	cfg := turnConfig(t)
	cfg.TURN.SIPCredentials = true
	n := startNode(t, cfg)
	const src = "127.0.0.5"
	c := udpFrom(t, src)
	to := n.turn.Addr()
	realm, nonce := turnNonce(t, c, to)
	answered, sent := 0, 0
	for i := range 2000 {
		pass := fmt.Sprintf("guess-%04d", i)
		if i == 1999 {
			pass = "s3cret-board"
		}
		key := pturn.GenerateAuthKey("boardroom", realm, pass)
		res := stunRoundTrip(t, c, to, allocateRequest(t, "boardroom", realm, nonce, key), time.Second)
		sent++
		if isSuccess(res) {
			t.Fatalf("guess %d (%q) got an allocation", i, pass)
		}
		if res == nil {
			break // dropped: banned
		}
		answered++
	}
	t.Logf("%d guesses sent, %d answered", sent, answered)
	if answered >= cfg.Guard.AuthFailures {
		t.Fatalf("%d wrong guesses answered, want fewer than auth_failures %d", answered, cfg.Guard.AuthFailures)
	}
	if _, banned := banOf(n, src); !banned {
		t.Fatal("the guessing source is not banned")
	}
	if evs := events(n, src, guard.RuleBruteForce); len(evs) == 0 || evs[0].Transport != "TURN" {
		t.Fatalf("brute-force events: %+v", evs)
	}
	if got := n.turn.Stats().AuthFailures; got < uint64(cfg.Guard.AuthFailures) {
		t.Fatalf("TURN auth failures = %d, want >= %d", got, cfg.Guard.AuthFailures)
	}
	// The right password from the banned source is dropped too.
	key := pturn.GenerateAuthKey("boardroom", realm, "s3cret-board")
	if res := stunRoundTrip(t, c, to, allocateRequest(t, "boardroom", realm, nonce, key), 300*time.Millisecond); res != nil {
		t.Fatalf("a banned source got an answer: %v", res)
	}
	// Another source with the right password is served.
	tc := newTURNClient(t, n, "127.0.0.6", "boardroom", "s3cret-board", realm)
	if _, err := tc.Allocate(); err != nil {
		t.Fatalf("the room from another source: %v", err)
	}
	_, body := adminGet(t, n, "", "/metrics")
	if v := metric(body, "portcullis_turn_auth_failures_total"); v == "" || v == "0" {
		t.Fatalf("portcullis_turn_auth_failures_total = %q", v)
	}
}

// newTURNClient is a pion TURN client on src.
func newTURNClient(t *testing.T, n *Node, src, user, pass, realm string) *pturn.Client {
	t.Helper()
	return newTURNClientOn(t, n, udpFrom(t, src), user, pass, realm)
}

// newTURNClientOn is newTURNClient on conn.
func newTURNClientOn(t *testing.T, n *Node, conn net.PacketConn, user, pass, realm string) *pturn.Client {
	t.Helper()
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: n.turn.Addr().String(), TURNServerAddr: n.turn.Addr().String(),
		Conn: conn, Username: user, Password: pass, Realm: realm, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestTURNRoomPasswordNotAKeyByDefault (issue #14 item 2): with TURN on by default, a room's
// SIP password (its HA1) is no TURN credential unless turn.sip_credentials says so.
func TestTURNRoomPasswordNotAKeyByDefault(t *testing.T) {
	n := startNode(t, turnConfig(t))
	c := newTURNClient(t, n, "127.0.0.7", "boardroom", "s3cret-board", "video.test")
	if rc, err := c.Allocate(); err == nil {
		_ = rc.Close()
		t.Fatal("the room's SIP password opened a TURN allocation")
	}
}

// sipAnswer sends one datagram and returns the first answer (nil after wait).
func sipAnswer(t *testing.T, c *net.UDPConn, to string, msg string, wait time.Duration) []byte {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo([]byte(msg), ua); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	k, _, err := c.ReadFrom(buf)
	if err != nil {
		return nil
	}
	return buf[:k]
}

// registerMsg is a REGISTER for room from c's address; auth is an Authorization value or "".
func registerMsg(c *net.UDPConn, node, room, callID string, cseq int, auth string) string {
	local := c.LocalAddr().String()
	m := "REGISTER sip:video.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + room + "@video.test>;tag=" + callID + "\r\nTo: <sip:" + room + "@video.test>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: " + fmt.Sprint(cseq) + " REGISTER\r\nContact: <sip:" + room + "@" + local + ">\r\n" +
		"Expires: 300\r\nUser-Agent: RoomSystem-Test\r\n"
	if auth != "" {
		m += "Authorization: " + auth + "\r\n"
	}
	return m + "Content-Length: 0\r\n\r\n"
}

func statusOf(res []byte) int {
	var code int
	if res == nil {
		return 0
	}
	_, _ = fmt.Sscanf(string(res), "SIP/2.0 %d", &code)
	return code
}

// register sends a REGISTER for room with password from c, answering the challenge, and
// returns the final status (0: no answer).
func register(t *testing.T, n *Node, c *net.UDPConn, room, password string) int {
	t.Helper()
	to := n.addr(t, "udp")
	callID := randHex()
	res := sipAnswer(t, c, to, registerMsg(c, to, room, callID, 1, ""), 2*time.Second)
	if statusOf(res) != 401 {
		return statusOf(res)
	}
	var chal *digest.Challenge
	for _, line := range strings.Split(string(res), "\r\n") {
		if v, ok := strings.CutPrefix(line, "WWW-Authenticate: "); ok {
			if ch, err := digest.ParseChallenge(v); err == nil && (chal == nil || ch.Algorithm == "MD5") {
				chal = ch
			}
		}
	}
	if chal == nil {
		t.Fatalf("401 without a usable challenge: %s", res)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:video.test", Username: room, Password: password, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	return statusOf(sipAnswer(t, c, to, registerMsg(c, to, room, callID, 2, cred.String()), 2*time.Second))
}

// TestRoomLockoutAcrossSources (issue #14 item 5): fifty sources (127.0.1.1-50) each guessing
// a room's password once stay under the per-source limit, but lock the room's digest: then
// even the right password from a new source is refused (room-locked events, metric), while
// the room's registered flow keeps registering.
func TestRoomLockoutAcrossSources(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	room := udpFrom(t, "127.0.0.30")
	if got := register(t, n, room, "boardroom", "s3cret-board"); got != 200 {
		t.Fatalf("the room registers: %d", got)
	}
	for i := 1; i <= 50; i++ {
		c := udpFrom(t, fmt.Sprintf("127.0.1.%d", i))
		if got := register(t, n, c, "boardroom", fmt.Sprintf("guess-%d", i)); got != 403 && got != 0 {
			t.Fatalf("guess from 127.0.1.%d: %d", i, got)
		}
	}
	if evs := roomEvents(n, "boardroom", guard.RuleRoomLocked); len(evs) == 0 {
		t.Fatalf("no room-locked event; events: %s", ruleSummary(n.Guard().Recent(guard.EventFilter{}, 0)))
	}
	// The right password from a new source is refused while the room is locked.
	if got := register(t, n, udpFrom(t, "127.0.1.77"), "boardroom", "s3cret-board"); got == 200 {
		t.Fatal("a new source registered the locked room")
	}
	// The room's flow keeps working.
	if got := register(t, n, room, "boardroom", "s3cret-board"); got != 200 {
		t.Fatalf("the room's own flow re-registers: %d", got)
	}
	_, body := adminGet(t, n, "", "/metrics")
	if v := metric(body, `portcullis_guard_refusals_total{rule="room-locked"}`); v == "" || v == "0" {
		t.Fatalf(`portcullis_guard_refusals_total{rule="room-locked"} = %q`, v)
	}
}

// TestSiteSourceGuessingBanned (issue #14 item 5): a source on the address a room registered
// from (a guest on the same NAT) that guesses passwords is banned like any other once it passes
// guard.auth_failures; the room's own flow (same address, its port) still registers.
func TestSiteSourceGuessingBanned(t *testing.T) {
	cfg := testConfig(t)
	cfg.Guard.RoomAuthFailures = 1000 // this test is about the source, not the room lockout
	n := startNode(t, cfg)
	const site = "127.0.0.40"
	room := udpFrom(t, site)
	if got := register(t, n, room, "boardroom", "s3cret-board"); got != 200 {
		t.Fatalf("the room registers: %d", got)
	}
	guest := udpFrom(t, site)
	answered := 0
	for i := range 51 {
		if got := register(t, n, guest, "boardroom", fmt.Sprintf("guess-%d", i)); got == 0 {
			break
		} else if got == 200 {
			t.Fatalf("guess %d registered", i)
		}
		answered++
	}
	if _, banned := banOf(n, site); !banned {
		t.Fatalf("the guessing site source is not banned after %d answered guesses", answered)
	}
	if answered > cfg.Guard.AuthFailures {
		t.Fatalf("%d guesses answered, want at most %d", answered, cfg.Guard.AuthFailures)
	}
	if got := register(t, n, room, "boardroom", "s3cret-board"); got != 200 {
		t.Fatalf("the room's own flow after the ban: %d", got)
	}
}

var _ = errors.New

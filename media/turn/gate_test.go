package turn

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v2"
	pturn "github.com/pion/turn/v3"
)

// unauthAllocate is an Allocate request without credentials (pion answers 401 with a nonce,
// 4.7x its size: an amplifier toward a spoofed source).
func unauthAllocate(t testing.TB) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Length: 4, Value: []byte{17, 0, 0, 0}}, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// TestUnauthenticatedAllocateFloodBounded (issue #14 item 10): 20,000 unauthenticated
// Allocate requests from one source get at most the source's burst plus its rate over the
// flood's duration in answers; the rest are dropped and counted.
func TestUnauthenticatedAllocateFloodBounded(t *testing.T) {
	s := newServer(t, nil)
	c, err := net.ListenPacket("udp4", "127.0.0.9:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var answers, bytesIn atomic.Int64
	var last atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			answers.Add(1)
			bytesIn.Add(int64(n))
			last.Store(time.Now().UnixNano())
		}
	}()
	req := unauthAllocate(t)
	start := time.Now()
	const flood = 20000
	for i := range flood {
		// a fresh transaction ID per request, as a flooder writes them
		req[8], req[9], req[10], req[11] = byte(i), byte(i>>8), byte(i>>16), 0x5a
		if _, err := c.WriteTo(req, s.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	<-done // the reader stops a second after the last answer
	elapsed := time.Duration(max(last.Load()-start.UnixNano(), 0))
	bound := int64(DefaultUnauthBurst) + int64(DefaultUnauthRate*elapsed.Seconds()) + 5
	t.Logf("%d requests of %d bytes, %d answers (%d bytes) within %s; bound %d; dropped %d",
		flood, len(req), answers.Load(), bytesIn.Load(), elapsed.Round(time.Millisecond), bound, s.Stats().RateLimited)
	if answers.Load() > bound {
		t.Fatalf("%d answers to %d unauthenticated requests, want at most %d", answers.Load(), flood, bound)
	}
	if s.Stats().RateLimited == 0 {
		t.Fatal("no rate-limited request counted")
	}
}

// banAfter is a Gate that bans a source after n failures (the node's guard does this with
// windows, events and the cluster; this is the seam's contract alone).
type banAfter struct {
	n        int
	mu       sync.Mutex
	failures map[netip.Addr]int
	users    []string
}

func (g *banAfter) Banned(src netip.AddrPort) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failures[src.Addr()] >= g.n
}

func (g *banAfter) AuthFailed(src netip.AddrPort, user, transport string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failures == nil {
		g.failures = map[netip.Addr]int{}
	}
	g.failures[src.Addr()]++
	g.users = append(g.users, user+"/"+transport)
}

func (g *banAfter) AuthSucceeded(netip.AddrPort, string) {}

// TestTCPGuessesReportedAndBannedConnectionClosed: over TURN/TCP, wrong passwords on one
// connection are reported to the gate, and once it bans the source the connection is closed
// and a new one refused; the right password never gets an allocation from there.
func TestTCPGuessesReportedAndBannedConnectionClosed(t *testing.T) {
	gate := &banAfter{n: 5}
	s := newServer(t, func(c *Config) { c.ListenTCP = "127.0.0.1:0"; c.Gate = gate })
	addr := s.tcpAddrs()[0]
	tc, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	frames := pturn.NewSTUNConn(tc)
	roundTrip := func(m *stun.Message) *stun.Message {
		t.Helper()
		if _, err := tc.Write(m.Raw); err != nil {
			return nil
		}
		buf := make([]byte, 1600)
		_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := frames.ReadFrom(buf)
		if err != nil {
			return nil
		}
		res := &stun.Message{Raw: buf[:n]}
		if res.Decode() != nil {
			t.Fatal("undecodable answer")
		}
		return res
	}
	build := func(setters ...stun.Setter) *stun.Message {
		t.Helper()
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			stun.RawAttribute{Type: stun.AttrRequestedTransport, Length: 4, Value: []byte{17, 0, 0, 0}}}, setters...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	res := roundTrip(build())
	var nonce stun.Nonce
	if res == nil || nonce.GetFrom(res) != nil {
		t.Fatalf("no nonce: %v", res)
	}
	answered := 0
	for i := range 20 {
		pass := fmt.Sprintf("guess-%d", i)
		if i == 19 {
			pass = "secret"
		}
		key := pturn.GenerateAuthKey("boardroom", realm, pass)
		res := roundTrip(build(stun.NewUsername("boardroom"), stun.NewRealm(realm), nonce, stun.MessageIntegrity(key), stun.Fingerprint))
		if res == nil {
			break // closed: banned
		}
		if res.Type.Class == stun.ClassSuccessResponse {
			t.Fatalf("guess %d (%q) got an allocation", i, pass)
		}
		answered++
	}
	if answered != gate.n-1 {
		t.Fatalf("%d guesses answered, want %d", answered, gate.n-1)
	}
	gate.mu.Lock()
	users := append([]string(nil), gate.users...)
	gate.mu.Unlock()
	if len(users) != gate.n || users[0] != "boardroom/"+TransportTCP {
		t.Fatalf("failures reported: %v", users)
	}
	if got := s.Stats().AuthFailures; got != uint64(gate.n) {
		t.Fatalf("AuthFailures = %d, want %d", got, gate.n)
	}
	// A new connection is closed at once.
	tc2, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc2.Close()
	_ = tc2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc2.Read(make([]byte, 1)); err == nil {
		t.Fatal("a banned source's new connection was served")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a banned source's new connection is still open")
	}
}

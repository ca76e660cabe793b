package turn

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	pturn "github.com/pion/turn/v3"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/media/relay"
)

const realm = "video.example.com"

var (
	loopback     = netip.MustParseAddr("127.0.0.1")
	loopbackPort = netip.AddrPortFrom(loopback, 40000)
)

func newPool(t *testing.T) *relay.Pool {
	t.Helper()
	base := testutil.PortWindow(t, loopback, 40)
	p, err := relay.NewPool(relay.PoolConfig{Bind: loopback, Min: base, Max: base + 39, Drain: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// newServer runs a TURN server on 127.0.0.1 with one room "boardroom"
// (password "secret") whose key comes from its HA1, as the registrar stores it.
func newServer(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	ha1 := hexMD5("boardroom:" + realm + ":secret")
	cfg := Config{
		Realm: realm, Listen: "127.0.0.1:0", RelayAddress: loopback, Pool: newPool(t),
		Credentials: func(user string, _ netip.AddrPort) ([]byte, bool) {
			if user != "boardroom" {
				return nil, false
			}
			k, err := KeyFromHA1(ha1)
			return k, err == nil
		},
		RESTSecret: "rest-secret",
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newClient(t *testing.T, s *Server, user, pass string) *pturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: s.Addr().String(), TURNServerAddr: s.Addr().String(),
		Conn: conn, Username: user, Password: pass, Realm: realm, RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	return c
}

func allocate(t *testing.T, c *pturn.Client) net.PacketConn {
	t.Helper()
	rc, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

func TestAllocateWithRoomCredentials(t *testing.T) {
	before := runtime.NumGoroutine()
	s := newServer(t, nil)
	c := newClient(t, s, "boardroom", "secret")
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	ra := rc.LocalAddr().(*net.UDPAddr)
	lo, hi := s.pool.Range()
	if ra.Port < lo || ra.Port > hi || ra.Port%2 != 0 {
		t.Fatalf("relay port %d not an even port of the shared pool %d-%d", ra.Port, lo, hi)
	}
	if st := s.Stats(); st.Live != 1 || st.Total != 1 {
		t.Fatalf("stats %+v", st)
	}
	if ps := s.pool.Stats(); ps.InUse != 1 {
		t.Fatalf("pool %+v", ps)
	}
	_ = rc.Close() // Refresh lifetime 0: the server frees the allocation
	testutil.Eventually(t, "allocation to be freed", func() bool { return s.Stats().Live == 0 })
	testutil.Eventually(t, "pair to leave use", func() bool { return s.pool.Stats().InUse == 0 })
	c.Close()
	_ = s.Close()
	testutil.Eventually(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before+2 })
}

func TestAllocateRefused(t *testing.T) {
	s := newServer(t, nil)
	expired, pass, _ := pturn.GenerateLongTermTURNRESTCredentials("rest-secret", "guest", -time.Minute)
	for _, tc := range []struct{ name, user, pass string }{
		{"wrong password", "boardroom", "nope"},
		{"unknown user", "lobby", "secret"},
		{"expired REST credential", expired, pass},
		{"REST credential with wrong secret", "9999999999:guest", "AAAA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, s, tc.user, tc.pass)
			if _, err := c.Allocate(); err == nil {
				t.Fatal("allocation succeeded")
			}
		})
	}
	// Every failure counts, a wrong password too (it used to fail pion's integrity check unseen).
	if st := s.Stats(); st.Live != 0 || st.AuthFailures != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAllocateWithRESTCredentials: credentials made by pion's generator (as coturn's users
// make them) and by RESTCredentials, ours, both allocate.
func TestAllocateWithRESTCredentials(t *testing.T) {
	s := newServer(t, nil)
	user, pass, err := pturn.GenerateLongTermTURNRESTCredentials("rest-secret", "guest", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	allocate(t, newClient(t, s, user, pass))
	user, pass = RESTCredentials("rest-secret", "guest2", time.Hour, time.Now())
	allocate(t, newClient(t, s, user, pass))
}

// TestPeersDeniedByDefault: CreatePermission to loopback and RFC 1918 peers
// is refused unless allow-listed.
func TestPeersDeniedByDefault(t *testing.T) {
	s := newServer(t, nil)
	c := newClient(t, s, "boardroom", "secret")
	allocate(t, c)
	for _, peer := range []string{"127.0.0.1:5000", "10.1.2.3:5000", "169.254.169.254:80", "192.168.1.1:5000"} {
		t.Run(peer, func(t *testing.T) {
			addr, _ := net.ResolveUDPAddr("udp4", peer)
			if err := c.CreatePermission(addr); err == nil {
				t.Fatalf("permission to %s granted", peer)
			}
		})
	}
	if st := s.Stats(); st.PeersDenied < 4 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRelayToAllowListedPeer: with 127.0.0.0/8 allow-listed explicitly (the
// test runs on loopback), data flows client -> relay -> peer and back.
func TestRelayToAllowListedPeer(t *testing.T) {
	s := newServer(t, func(c *Config) { c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	c := newClient(t, s, "boardroom", "secret")
	rc := allocate(t, c)
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	if err := c.CreatePermission(peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.WriteTo([]byte("hello peer"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello peer" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	if from.(*net.UDPAddr).Port != rc.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("peer saw source %v, want relay %v", from, rc.LocalAddr())
	}
	if _, err := peer.WriteTo([]byte("hello client"), from); err != nil {
		t.Fatal(err)
	}
	_ = rc.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err = rc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello client" {
		t.Fatalf("client got %q, %v", buf[:n], err)
	}
}

func TestQuotaPerUser(t *testing.T) {
	s := newServer(t, func(c *Config) { c.QuotaPerUser = 2 })
	for range 2 {
		allocate(t, newClient(t, s, "boardroom", "secret"))
	}
	_, err := newClient(t, s, "boardroom", "secret").Allocate()
	if err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("third allocation: err = %v, want 486", err)
	}
	if st := s.Stats(); st.Live != 2 || st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Another user is not affected.
	user, pass, _ := pturn.GenerateLongTermTURNRESTCredentials("rest-secret", "guest", time.Hour)
	allocate(t, newClient(t, s, user, pass))
}

func TestKeyFromHA1(t *testing.T) {
	want := pturn.GenerateAuthKey("boardroom", realm, "secret")
	got, err := KeyFromHA1(hexMD5("boardroom:" + realm + ":secret"))
	if err != nil || string(got) != string(want) {
		t.Fatalf("KeyFromHA1 = %x, %v; want %x", got, err, want)
	}
	for _, bad := range []string{"", "zz", "0123"} {
		if _, err := KeyFromHA1(bad); !errors.Is(err, ErrBadHA1) {
			t.Errorf("KeyFromHA1(%q) err = %v", bad, err)
		}
	}
}

func TestPeerFilter(t *testing.T) {
	own := netip.MustParseAddr("203.0.113.10")
	f := NewPeerFilter([]netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}, []netip.Addr{own})
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"198.51.100.7", true},
		{"2001:db8::1", true},
		{"127.0.0.1", false},
		{"10.1.2.3", false},
		{"10.20.1.1", true}, // allow-listed
		{"172.16.5.5", false},
		{"192.168.0.1", false},
		{"100.64.1.1", false},
		{"169.254.169.254", false},
		{"224.0.0.1", false},
		{"0.0.0.0", false},
		{"::1", false},
		{"fd00::1", false},
		{"fe80::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},
		{"203.0.113.10", false}, // the node itself
	} {
		t.Run(tc.ip, func(t *testing.T) {
			if got := f.Allowed(netip.MustParseAddr(tc.ip)); got != tc.want {
				t.Fatalf("Allowed(%s) = %v, want %v", tc.ip, got, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	p := newPool(t)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no realm", Config{Pool: p, RelayAddress: loopback, RESTSecret: "x"}},
		{"no pool", Config{Realm: realm, RelayAddress: loopback, RESTSecret: "x"}},
		{"no relay address", Config{Realm: realm, Pool: p, RESTSecret: "x"}},
		{"no credentials", Config{Realm: realm, Pool: p, RelayAddress: loopback}},
		{"tls without config", Config{Realm: realm, Pool: p, RelayAddress: loopback, RESTSecret: "x", ListenTLS: "127.0.0.1:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewServer(tc.cfg); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestAllocateOverTCP(t *testing.T) {
	s := newServer(t, func(c *Config) { c.ListenTCP = "127.0.0.1:0" })
	// The TCP listener's address is not exported; find it from pion's config.
	var addr string
	for _, l := range s.tcpAddrs() {
		addr = l
	}
	tc, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn := pturn.NewSTUNConn(tc)
	c, err := pturn.NewClient(&pturn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: "boardroom", Password: "secret", Realm: realm})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = tc.Close() })
	allocate(t, c)
}

// TestPeerFilterIPv4Embedding: IPv6 forms that carry an IPv4 address (NAT64, IPv4-compatible,
// IPv4-mapped, 6to4, Teredo) are judged by that IPv4 address, against the deny list and the
// node's own addresses (issue #14 item 10).
func TestPeerFilterIPv4Embedding(t *testing.T) {
	own := netip.MustParseAddr("203.0.113.10")
	f := NewPeerFilter(nil, []netip.Addr{own})
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"64:ff9b::7f00:1", false},             // NAT64 of 127.0.0.1
		{"64:ff9b::a00:1", false},              // NAT64 of 10.0.0.1
		{"64:ff9b::cb00:710a", false},          // NAT64 of the node itself
		{"64:ff9b::c633:6407", true},           // NAT64 of 198.51.100.7, a public address
		{"64:ff9b:1::c633:6407", false},        // local-use NAT64 (RFC 8215)
		{"::127.0.0.1", false},                 // IPv4-compatible
		{"::203.0.113.10", false},              // IPv4-compatible, the node itself
		{"::ffff:127.0.0.1", false},            // IPv4-mapped
		{"::ffff:203.0.113.10", false},         // IPv4-mapped, the node itself
		{"2002:7f00:1::", false},               // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", false},           // 6to4 of 169.254.169.254
		{"2002:cb00:710a::1", false},           // 6to4 of the node itself
		{"2002:c633:6407::1", true},            // 6to4 of a public address
		{"2001:0:c633:6407::80ff:fffe", false}, // Teredo, client 127.0.0.1
		{"203.0.113.10", false},
		{"2001:db8::1", true},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			if got := f.Allowed(netip.MustParseAddr(tc.ip)); got != tc.want {
				t.Fatalf("Allowed(%s) = %v, want %v", tc.ip, got, tc.want)
			}
		})
	}
}

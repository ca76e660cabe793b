package sbc

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v2"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/media/turn"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// realmOf returns the realm parameter of the first WWW-Authenticate or Proxy-Authenticate
// header in a captured message, or "".
var realmParam = regexp.MustCompile(`(?i)\n(?:WWW|Proxy)-Authenticate:[^\r\n]*realm="([^"]*)"`)

// recordingConn is a PacketConn that keeps a copy of every datagram it reads (what a TURN
// server sent to the client on it).
type recordingConn struct {
	net.PacketConn
	mu   sync.Mutex
	read [][]byte
}

func (c *recordingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(p)
	if n > 0 {
		c.mu.Lock()
		c.read = append(c.read, bytes.Clone(p[:n]))
		c.mu.Unlock()
	}
	return n, a, err
}

func (c *recordingConn) all() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.read...)
}

// TestDefaultsNameNothingOnTheWire (issue #13 item 8): with the shipped sip.domain (none), a
// REGISTER with its challenge, a whole call, a keepalive, an OPTIONS answer and a TURN allocation
// are captured and none of it names the product, in any case: not the digest realm of the 401,
// not the TURN realm or a SOFTWARE attribute. Before the fix the realm was portcullis.local.
func TestDefaultsNameNothingOnTheWire(t *testing.T) {
	testpeer.Require(t, "sipp")
	w := &wire{}
	cfg := callConfig(t)
	cfg.SIP.Domain = config.Default().SIP.Domain
	cfg.TURN.Listen = []config.Listen{{Transport: "udp", Addr: netip.MustParseAddrPort("127.0.0.1:0")}}
	cfg.TURN.Secret = "a-turn-rest-secret-for-this-test-only"
	cfg.Media.Advertise = netip.MustParseAddr("127.0.0.1")
	n := startNode(t, cfg, w.tapped)
	realm := n.cfg.SIP.Domain
	if realm == "" || strings.Contains(strings.ToLower(realm), "portcullis") || realm != n.Store().State().Realm() {
		t.Fatalf("default realm %q (recorded %q)", realm, n.Store().State().Realm())
	}

	if res := registerRoom(t, n, "udp", "s3cret-board"); res.StatusCode != 200 {
		t.Fatalf("REGISTER in the recorded realm: %d", res.StatusCode)
	}
	uas := sippRoom(t, n, "boardroom", "s3cret-board", "uas.xml", 1)
	sippCall(t, n, "boardroom", "uac.xml", 1)
	uas.wait(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.reg.Tick(ctx) // keepalive OPTIONS down the SIPp room's flow
	sipOptions(t, n.addr(t, "udp"))
	turnRead := turnAllocate(t, n, realm)

	kinds, challenged, keepalives := map[string]int{}, 0, 0
	for _, m := range w.all() {
		first, _, _ := strings.Cut(string(m.b), "\r\n")
		kinds[first[:min(len(first), 16)]]++
		if strings.HasPrefix(first, "OPTIONS ") {
			keepalives++
		}
		if r := realmParam.FindSubmatch(m.b); r != nil {
			challenged++
			if string(r[1]) != realm {
				t.Errorf("challenge realm %q, want %q", r[1], realm)
			}
		}
		checkNeutral(t, m.transport+" to "+m.to, m.b)
	}
	if challenged == 0 || keepalives == 0 {
		t.Fatalf("capture lacks a challenge or a keepalive: %v", kinds)
	}
	for _, b := range turnRead {
		checkNeutral(t, "TURN answer", b)
		m := &stun.Message{Raw: b}
		if m.Decode() != nil {
			continue
		}
		if _, err := m.Get(stun.AttrSoftware); err == nil {
			t.Errorf("TURN answer %s carries SOFTWARE", m.Type)
		}
	}
	t.Logf("realm %q; %d SIP messages checked (%v), %d TURN answers", realm, len(w.all()), kinds, len(turnRead))
}

// checkNeutral fails the test when b names the product or its SIP stack.
func checkNeutral(t *testing.T, where string, b []byte) {
	t.Helper()
	low := bytes.ToLower(b)
	for _, name := range []string{"portcullis", "sipgo"} {
		if bytes.Contains(low, []byte(name)) {
			t.Errorf("%q on the wire (%s):\n%s", name, where, b)
		}
	}
}

// turnAllocate allocates a relay at n's TURN server with REST credentials and returns every
// datagram the server sent to the client (its 401 with realm and nonce, the success).
func turnAllocate(t *testing.T, n *Node, realm string) [][]byte {
	t.Helper()
	conn := &recordingConn{PacketConn: udpFrom(t, "127.0.0.9")}
	user, pass := turn.RESTCredentials(n.cfg.TURN.Secret, "boardroom", time.Hour, time.Now())
	c := newTURNClientOn(t, n, conn, user, pass, realm)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatalf("TURN allocate in realm %q: %v", realm, err)
	}
	_ = rc.Close()
	return conn.all()
}

// TestRealmRecordedOnce: without sip.domain a node records a neutral realm at its first start;
// it keeps it across restarts, with its data dir's cache and without (read back from the state).
func TestRealmRecordedOnce(t *testing.T) {
	cfg := testConfig(t)
	cfg.SIP.Domain = ""
	n := startNode(t, cfg)
	realm := n.cfg.SIP.Domain
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(realm) {
		t.Fatalf("first start: realm %q, want a random token", realm)
	}
	if !strings.Contains(n.Banner(), realm+" (digest realm; recorded") {
		t.Errorf("banner does not say the realm:\n%s", n.Banner())
	}
	if r := n.doctorReport(); r.Realm != realm || r.RealmSource == "" {
		t.Errorf("doctor report realm %q (%q)", r.Realm, r.RealmSource)
	}
	n.Close()

	n = startNode(t, cfg)
	if n.cfg.SIP.Domain != realm {
		t.Fatalf("after a restart: realm %q, want %q", n.cfg.SIP.Domain, realm)
	}
	n.Close()

	if err := os.Remove(filepath.Join(cfg.Node.DataDir, realmFile)); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, cfg)
	if n.cfg.SIP.Domain != realm {
		t.Fatalf("after a restart without the cache: realm %q, want %q", n.cfg.SIP.Domain, realm)
	}
	if res := registerRoom(t, n, "udp", "s3cret-board"); res.StatusCode != 200 {
		t.Fatalf("REGISTER after restarts: %d", res.StatusCode)
	}
}

// TestRealmSharedByCluster: three nodes without sip.domain use the one realm the first recorded,
// and a room registers on any of them.
func TestRealmSharedByCluster(t *testing.T) {
	nodes := startCluster(t, func(t *testing.T) config.Config {
		cfg := testConfig(t)
		cfg.SIP.Domain = ""
		return cfg
	})
	realm := nodes[0].cfg.SIP.Domain
	for _, n := range nodes {
		if n.cfg.SIP.Domain != realm || realm == "" {
			t.Fatalf("node %s: realm %q, edge1's %q", n.cfg.Node.ID, n.cfg.SIP.Domain, realm)
		}
	}
	if res := registerRoom(t, nodes[2], "udp", "s3cret-board"); res.StatusCode != 200 {
		t.Fatalf("REGISTER at edge3: %d", res.StatusCode)
	}
}

// TestEnsureRealm: what the first node records, by what it finds.
func TestEnsureRealm(t *testing.T) {
	token := regexp.MustCompile(`^[0-9a-f]{12}$`)
	tests := []struct {
		name      string
		domain    string // sip.domain
		advertise string // sip.advertise
		rooms     bool   // the state holds rooms (a cluster upgraded from the portcullis.local default)
		recorded  string // already recorded
		want      string // "" : a random token
	}{
		{name: "fresh cluster", want: ""},
		{name: "explicit domain recorded", domain: "video.example.com", rooms: true, want: "video.example.com"},
		{name: "upgrade with rooms keeps the old default", rooms: true, advertise: "sbc.example.com", want: config.LegacyDomain},
		{name: "advertised host name", advertise: "sbc.example.com", want: "sbc.example.com"},
		{name: "advertised IPv4", advertise: "198.51.100.7", want: "198.51.100.7"},
		{name: "advertised IPv6 is no domain", advertise: "2001:db8::7", want: ""},
		{name: "first write wins", domain: "other.example.com", recorded: "k7dq2m9xw4ta", want: "k7dq2m9xw4ta"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := state.NewLocal()
			if tt.rooms {
				applyAll(t, st, state.PutRoom(state.Room{Name: "boardroom", HA1MD5: strings.Repeat("0", 32)}))
			}
			if tt.recorded != "" {
				applyAll(t, st, state.SetRealm(tt.recorded))
			}
			n := &Node{store: st, log: slog.New(slog.DiscardHandler)}
			n.cfg.SIP.Domain, n.cfg.SIP.Advertise = tt.domain, tt.advertise
			if err := n.ensureRealm(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := st.State().Realm()
			if (tt.want == "" && !token.MatchString(got)) || (tt.want != "" && got != tt.want) {
				t.Fatalf("recorded %q, want %q", got, tt.want)
			}
		})
	}
}

func applyAll(t *testing.T, st state.Store, cs ...state.Command) {
	t.Helper()
	for _, c := range cs {
		if err := st.Propose(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

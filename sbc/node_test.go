package sbc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// testConfig is a single node on 127.0.0.1 with free ports and a temporary data dir.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Node.ID = "test1"
	cfg.Node.DataDir = t.TempDir()
	cfg.SIP.Domain = "video.test"
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	cfg.SIP.Listen = []config.Listen{{Transport: "udp", Addr: lo}, {Transport: "tcp", Addr: lo}}
	cfg.Media.Bind = netip.MustParseAddr("127.0.0.1")
	// Every test endpoint is on loopback, which the shipped media.allow_peers (none) refuses;
	// tests of the refusal itself set it back.
	cfg.Media.AllowPeers = config.PrefixList{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.TURN.Listen = nil
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Cluster.Bind = "127.0.0.1:0"
	cfg.Rooms = []config.Room{{Name: "boardroom", Password: "s3cret-board", Inbound: "open", AutoAnswer: "block", DropIn: "deny"}}
	return cfg
}

// startNode starts a node on cfg; setup runs between New and Start.
func startNode(t *testing.T, cfg config.Config, setup ...func(*Node)) *Node {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	n, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := n.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		n.Close()
	})
	return n
}

func (n *Node) addr(t *testing.T, transport string) string {
	t.Helper()
	b, ok := n.firstBound(transport)
	if !ok {
		t.Fatalf("no %s listener", transport)
	}
	return b.Addr.String()
}

// sipOptions sends a raw OPTIONS over UDP and returns the status line of the answer.
func sipOptions(t *testing.T, addr string) string {
	t.Helper()
	return sipRequest(t, addr, "OPTIONS")
}

// sipRequest sends a raw out-of-dialog request over UDP and returns the answer's status line.
func sipRequest(t *testing.T, addr, method string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := rawRequest(method, "boardroom", "probe", "portcullis-test", addr, c.LocalAddr().String())
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	nr, err := c.Read(buf)
	if err != nil {
		return "no answer: " + err.Error()
	}
	line, _, _ := strings.Cut(string(buf[:nr]), "\r\n")
	return line
}

// rawRequest is an out-of-dialog request from local to user@addr, as a scanner or probe writes it.
func rawRequest(method, user, fromUser, ua, addr, local string) string {
	return method + " sip:" + user + "@" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:" + fromUser + "@" + local + ">;tag=1\r\nTo: <sip:" + user + "@" + addr + ">\r\n" +
		"Call-ID: " + randHex() + "@test\r\nCSeq: 1 " + method + "\r\nUser-Agent: " + ua + "\r\nContent-Length: 0\r\n\r\n"
}

func randHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func TestOptionsAndUnknownMethods(t *testing.T) {
	n := startNode(t, testConfig(t))
	tests := []struct {
		name, method, want string
	}{
		{"options", "OPTIONS", "SIP/2.0 200 OK"},
		{"invite without contact", "INVITE", "SIP/2.0 400 Bad Request"},
		{"bye outside a dialog", "BYE", "SIP/2.0 481 Call/Transaction Does Not Exist"},
		{"known but not served", "SUBSCRIBE", "SIP/2.0 405 Method Not Allowed"},
		{"unknown method", "FROBNICATE", "SIP/2.0 501 Not Implemented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sipRequest(t, n.addr(t, "udp"), tt.method); got != tt.want {
				t.Fatalf("%s: got %q, want %q", tt.method, got, tt.want)
			}
		})
	}
	if c := n.Store().State().Counts(); c.Calls != 0 || c.Records != 0 {
		t.Fatalf("requests created call state: %+v", c)
	}
}

// TestTortureMessages sends the RFC 4475 torture messages over UDP and TCP: the node must not
// crash, must keep answering, and must create no state from them.
func TestTortureMessages(t *testing.T) {
	n := startNode(t, testConfig(t))
	files, err := filepath.Glob("testdata/torture/*/*.dat")
	if err != nil || len(files) < 40 {
		t.Fatalf("torture corpus: %d files, %v", len(files), err)
	}
	udp, err := net.Dial("udp", n.addr(t, "udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		udp.Write(data)
		tcp, err := net.Dial("tcp", n.addr(t, "tcp"))
		if err != nil {
			t.Fatal(err)
		}
		tcp.Write(data)
		tcp.Close()
	}
	// Still serving, and nothing was registered or called.
	if got := sipOptions(t, n.addr(t, "udp")); got != "SIP/2.0 200 OK" {
		t.Fatalf("after torture: OPTIONS answered %q", got)
	}
	st := n.Store().State()
	if c := st.Counts(); c.Bindings != 0 || c.Calls != 0 || c.Records != 0 {
		t.Fatalf("torture messages created state: %+v", c)
	}
}

// TestBannedSourceDroppedBeforeParsing bans 127.0.0.1 through the cluster store: the node stops
// answering it at once (no response at all), and answers again once the ban is lifted.
func TestBannedSourceDroppedBeforeParsing(t *testing.T) {
	n := startNode(t, testConfig(t))
	addr := n.addr(t, "udp")
	if got := sipOptions(t, addr); got != "SIP/2.0 200 OK" {
		t.Fatalf("before the ban: %q", got)
	}
	ban := netip.MustParsePrefix("127.0.0.1/32")
	ctx := context.Background()
	if err := n.Store().Propose(ctx, state.PutBan(state.Ban{Prefix: ban, Rule: "test", Reason: "test ban",
		Created: time.Now(), Until: time.Now().Add(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return n.blocklist.Blocked(ban.Addr()) })
	dropped := n.edgeStats.DroppedSource.Load()
	if got := sipOptions(t, addr); !strings.HasPrefix(got, "no answer") {
		t.Fatalf("banned source was answered: %q", got)
	}
	if n.edgeStats.DroppedSource.Load() == dropped {
		t.Fatal("drop not counted")
	}
	if err := n.Store().Propose(ctx, state.LiftBan(ban)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !n.blocklist.Blocked(ban.Addr()) })
	if got := sipOptions(t, addr); got != "SIP/2.0 200 OK" {
		t.Fatalf("after lifting the ban: %q", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, "condition", cond)
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// faultNet is the test network: every node dials through it, so a test can cut chosen pairs
// of nodes (dials fail, live connections are closed) and heal them.
type faultNet struct {
	mu      sync.Mutex
	blocked map[[2]string]bool // unordered address pairs
	conns   map[*faultConn]struct{}
	frozen  map[string]bool // addresses in a black hole (freeze_test.go)
	freezes atomic.Bool     // a freeze was ever set: conns poll (freeze_test.go)
}

type faultConn struct {
	net.Conn
	from, to string
	fn       *faultNet
	dl       deadlines // what the user set (freeze_test.go)
}

// Unwrap gives the TCP connection (for the idle-connection check).
func (c *faultConn) Unwrap() net.Conn { return c.Conn }

func (c *faultConn) Close() error {
	c.fn.mu.Lock()
	delete(c.fn.conns, c)
	c.fn.mu.Unlock()
	return c.Conn.Close()
}

func newFaultNet() *faultNet {
	return &faultNet{blocked: map[[2]string]bool{}, conns: map[*faultConn]struct{}{}, frozen: map[string]bool{}}
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func (f *faultNet) dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		f.mu.Lock()
		cut := f.blocked[pair(from, addr)]
		f.mu.Unlock()
		if cut {
			return nil, fmt.Errorf("test partition: %s -> %s", from, addr)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		fc := &faultConn{Conn: c, from: from, to: addr, fn: f}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.blocked[pair(from, addr)] {
			_ = c.Close()
			return nil, fmt.Errorf("test partition: %s -> %s", from, addr)
		}
		f.conns[fc] = struct{}{}
		return fc, nil
	}
}

// partition cuts every link between a node of side a and a node of side b.
func (f *faultNet) partition(a, b []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			f.blocked[pair(x, y)] = true
		}
	}
	for c := range f.conns {
		if f.blocked[pair(c.from, c.to)] {
			_ = c.Conn.Close()
			delete(f.conns, c)
		}
	}
}

func (f *faultNet) heal() {
	f.mu.Lock()
	clear(f.blocked)
	f.mu.Unlock()
}

type testNode struct {
	id   string
	addr string
	cfg  Config
	n    *Node
}

type testCluster struct {
	t     testing.TB
	base  string
	net   *faultNet
	mu    sync.Mutex
	nodes map[string]*testNode
}

func newTestCluster(t testing.TB) *testCluster {
	t.Helper()
	c := &testCluster{t: t, base: t.TempDir(), net: newFaultNet(), nodes: map[string]*testNode{}}
	t.Cleanup(func() {
		for _, tn := range c.all() {
			c.kill(tn.id)
		}
	})
	return c
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PORTCULLIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// freeAddr is a free address for a node on loopback. The port is outside the kernel's ephemeral
// range: a node that restarts binds it again, and an ephemeral port freed when the node stopped
// was now and then taken by another socket in between ("bind: address already in use").
func freeAddr(t testing.TB) string {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	return netip.AddrPortFrom(lo, uint16(testutil.PortWindow(t, lo, 1))).String()
}

// testConfig is a LAN-tight configuration for a node on loopback.
func (c *testCluster) testConfig(id string) Config {
	addr := freeAddr(c.t)
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = filepath.Join(c.base, id)
	cfg.Bind = addr
	if os.Getenv("PORTCULLIS_TEST_DEFAULT_TIMEOUTS") == "" { // set it to measure the defaults
		cfg.HeartbeatTimeout = 400 * time.Millisecond
		cfg.ElectionTimeout = 400 * time.Millisecond
		cfg.LeaderLeaseTimeout = 200 * time.Millisecond
		cfg.CommitTimeout = 10 * time.Millisecond
	}
	cfg.ApplyTimeout = 3 * time.Second
	cfg.Logger = testLogger(c.t).With("test_node", id)
	cfg.dial = c.net.dialer(addr)
	cfg.expireEvery = 200 * time.Millisecond
	return cfg
}

// start opens a new node; mod adjusts its config (join, token).
func (c *testCluster) start(id string, mod func(*Config)) *testNode {
	c.t.Helper()
	cfg := c.testConfig(id)
	if mod != nil {
		mod(&cfg)
	}
	tn := &testNode{id: id, addr: cfg.Bind, cfg: cfg}
	c.mu.Lock()
	c.nodes[id] = tn
	c.mu.Unlock()
	c.open(tn)
	return tn
}

func (c *testCluster) open(tn *testNode) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Open(ctx, tn.cfg)
	if err != nil {
		c.t.Fatalf("open %s: %v", tn.id, err)
	}
	c.mu.Lock()
	tn.n = n
	c.mu.Unlock()
}

// kill stops a node hard.
func (c *testCluster) kill(id string) {
	c.t.Helper()
	tn := c.node(id)
	c.mu.Lock()
	n := tn.n
	tn.n = nil
	c.mu.Unlock()
	if n != nil {
		_ = n.Close()
	}
}

// restart opens a stopped node again from its data dir.
func (c *testCluster) restart(id string) *testNode {
	c.t.Helper()
	tn := c.node(id)
	c.mu.Lock()
	up := tn.n != nil
	c.mu.Unlock()
	if up {
		c.t.Fatalf("restart %s: still running", id)
	}
	c.open(tn)
	return tn
}

func (c *testCluster) node(id string) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	tn := c.nodes[id]
	if tn == nil {
		c.t.Fatalf("no node %s", id)
	}
	return tn
}

func (c *testCluster) forget(id string) {
	c.mu.Lock()
	delete(c.nodes, id)
	c.mu.Unlock()
}

// all returns a copy of every node (running or not), sorted by ID.
func (c *testCluster) all() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testNode
	for _, tn := range c.nodes {
		cp := *tn
		out = append(out, &cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, tn := range c.all() {
		if tn.n != nil {
			out = append(out, tn)
		}
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.EventuallyWithin(t, timeout, what, cond)
}

// leader waits until the running nodes among ids (all running nodes if none) agree on a
// leader that is one of them, and returns it.
func (c *testCluster) leader(timeout time.Duration, ids ...string) *testNode {
	c.t.Helper()
	var found *testNode
	waitFor(c.t, timeout, "a leader", func() bool {
		found = c.agreedLeader(ids...)
		return found != nil
	})
	return found
}

func (c *testCluster) agreedLeader(ids ...string) *testNode {
	nodes := c.running()
	if len(ids) > 0 {
		var sel []*testNode
		for _, tn := range nodes {
			for _, id := range ids {
				if tn.id == id {
					sel = append(sel, tn)
				}
			}
		}
		nodes = sel
	}
	var lead string
	for _, tn := range nodes {
		id, _ := tn.n.Leader()
		if id == "" || lead != "" && id != lead {
			return nil
		}
		lead = id
	}
	for _, tn := range nodes {
		if tn.id == lead && tn.n.IsLeader() {
			return tn
		}
	}
	return nil
}

// follower returns a running node that is not the leader.
func (c *testCluster) follower() *testNode {
	for _, tn := range c.running() {
		if !tn.n.IsLeader() {
			return tn
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// converge waits until every running node (or the given ones) holds the same state.
func (c *testCluster) converge(timeout time.Duration, nodes ...*testNode) string {
	c.t.Helper()
	if len(nodes) == 0 {
		nodes = c.running()
	}
	var h string
	waitFor(c.t, timeout, "nodes to converge", func() bool {
		h = ""
		for _, tn := range nodes {
			x := tn.n.State().Hash()
			if h != "" && x != h {
				return false
			}
			h = x
		}
		return true
	})
	return h
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

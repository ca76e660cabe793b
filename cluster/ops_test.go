package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Leave on the leader hands leadership over and keeps the node in the configuration, so it
// comes back by itself; Decommission takes it out for good.
func TestLeaveAndDecommission(t *testing.T) {
	c := newTestCluster(t)
	startThree(t, c)
	ctx := ctxT(t, 30*time.Second)
	lead := c.leader(5 * time.Second)
	lead.n.Enqueue(state.PutRoom(state.Room{Name: "queued-before-leave"}))
	if err := c.node(lead.id).n.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.kill(lead.id) // already stopped; clears the handle
	nl := c.leader(2 * time.Second)
	if nl.id == lead.id {
		t.Fatal("leader did not change")
	}
	must(t, nl.n.Consistent(ctx))
	if _, ok := nl.n.State().Room("queued-before-leave"); !ok {
		t.Fatal("Leave lost a queued command")
	}
	if k := len(nl.n.Members()); k != 3 {
		t.Fatalf("after Leave: %d members, want 3 (a rolling restart keeps the node)", k)
	}
	c.restart(lead.id)
	waitFor(t, 5*time.Second, "the node to be back and healthy", func() bool {
		for _, m := range nl.n.Members() {
			if m.ID == lead.id && !m.Healthy {
				return false
			}
		}
		return true
	})
	// Members as seen from a follower come from the leader.
	f := c.follower()
	ms := f.n.Members()
	if len(ms) != 3 {
		t.Fatalf("members from follower: %+v", ms)
	}
	leaders := 0
	for _, m := range ms {
		if m.State == StateLeader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("members from follower: %d leaders: %+v", leaders, ms)
	}

	if err := c.node(f.id).n.Decommission(ctx); err != nil {
		t.Fatalf("decommission: %v", err)
	}
	c.kill(f.id)
	c.forget(f.id)
	waitFor(t, 3*time.Second, "two members", func() bool { return len(c.leader(3*time.Second).n.Members()) == 2 })
	if err := c.running()[0].n.Remove(ctx, "nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("remove unknown: %v", err)
	}
}

// Only holders of a certificate of the cluster CA get in; a join needs a live token.
func TestTLSAndTokens(t *testing.T) {
	c := newTestCluster(t)
	a := c.start("a", nil)
	must(t, a.n.WaitLeader(ctxT(t, 5*time.Second)))

	// A node of another cluster (its own CA) cannot talk to a.
	other := newTestCluster(t)
	x := other.start("x", nil)
	_, err := x.n.rpc.call(ctxT(t, 2*time.Second), a.addr, &rpcRequest{Op: opPing})
	if err == nil {
		t.Fatal("a stranger's certificate was accepted")
	}
	// No client certificate at all on the member protocol: refused.
	conn, err := tls.Dial("tcp", a.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpnMember}, MinVersion: tls.VersionTLS13})
	if err == nil {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Write([]byte{muxRPC})
		if err == nil {
			var b [1]byte
			_, err = conn.Read(b[:])
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}

	// A token with a wrong secret is refused; one with a wrong CA fingerprint never connects.
	tok, err := a.n.JoinToken(time.Minute)
	must(t, err)
	jt, err := parseJoinToken(tok)
	must(t, err)
	bad := *jt
	bad.Secret = "AAAA"
	ctx := ctxT(t, 5*time.Second)
	resp, err := certRPC(ctx, defaultDial, a.addr, jt.CA, &rpcRequest{Op: opCert, ID: "y", Addr: "127.0.0.1:1", Secret: bad.Secret})
	must(t, err)
	if !errors.Is(resp.Err.err(), ErrBadToken) {
		t.Fatalf("wrong secret: %v", resp.Err.err())
	}
	_, err = certRPC(ctx, defaultDial, a.addr, strings.Repeat("0", 64), &rpcRequest{Op: opCert})
	if err == nil {
		t.Fatal("join went ahead with a CA fingerprint that does not match")
	}
	// An expired token is refused by Open.
	exp, err := NewJoinToken(a.cfg.DataDir, "", time.Nanosecond)
	must(t, err)
	time.Sleep(time.Millisecond)
	cfg := c.testConfig("late")
	cfg.JoinToken = exp
	octx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := Open(octx, cfg); !errors.Is(err, ErrBadToken) {
		t.Fatalf("expired token: %v", err)
	}
	// Joining without a token or certificates is a config error.
	cfg = c.testConfig("lost")
	cfg.Join = []string{a.addr}
	if _, err := Open(octx, cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("join without token: %v", err)
	}
}

// The leader sweeps expired bindings and bans with its own clock; every node follows.
//
// Each node must have applied the binding before the sweep's drop counts: a poll for "the binding
// on every node at once" raced the sweep (300 ms of life) on a loaded machine, so each node's
// state tells the test when it applies the binding instead.
func TestExpireSweep(t *testing.T) {
	c := newTestCluster(t)
	startThree(t, c)
	ctx := ctxT(t, 10*time.Second)
	nodes := c.running()
	var putOn sync.Map // node id -> true once it applied the binding
	for _, tn := range nodes {
		id := tn.id
		cancel := tn.n.State().Observe(func(cmd state.Command) {
			if cmd.Type == state.CmdPutBinding {
				putOn.Store(id, true)
			}
		})
		t.Cleanup(cancel)
	}
	f := c.follower()
	must(t, f.n.Propose(ctx, state.PutBinding(state.Binding{Room: "r", Contact: "sip:r@x", Node: f.id,
		Expires: time.Now().Add(300 * time.Millisecond)})))
	waitFor(t, 10*time.Second, "every node to apply the binding, then the sweep to drop it everywhere", func() bool {
		for _, tn := range nodes {
			if _, ok := putOn.Load(tn.id); !ok || tn.n.State().Counts().Bindings != 0 {
				return false
			}
		}
		return true
	})
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := RunCLI([]string{"init", "--data-dir", dir, "--node-id", "edge1", "--advertise", "10.0.0.1:7000"}, &out, &errb); code != 0 {
		t.Fatalf("init: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "CA SHA-256: ") {
		t.Fatalf("init output: %s", out.String())
	}
	if code := RunCLI([]string{"init", "--data-dir", dir}, &out, &errb); code != 1 {
		t.Fatalf("second init: %d", code)
	}
	out.Reset()
	if code := RunCLI([]string{"join-token", "--data-dir", dir, "--ttl", "10m"}, &out, &errb); code != 0 {
		t.Fatalf("join-token: %d %s", code, errb.String())
	}
	jt, err := parseJoinToken(out.String())
	must(t, err)
	if jt.Addrs[0] != "10.0.0.1:7000" {
		t.Fatalf("token address %v", jt.Addrs)
	}
	for _, f := range []string{"ca.crt", "ca.key", "node.crt", "node.key", "join-tokens.json"} {
		if _, err := os.Stat(filepath.Join(dir, "tls", f)); err != nil {
			t.Fatal(err)
		}
	}
	if code := RunCLI([]string{"bogus"}, &out, &errb); code != 2 {
		t.Fatalf("bogus: %d", code)
	}
}

// Close leaves no goroutine behind, on a cluster that did some work.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		c := newTestCluster(t)
		startThree(t, c)
		ctx := ctxT(t, 10*time.Second)
		for i, tn := range c.running() {
			must(t, tn.n.Propose(ctx, state.PutRoom(state.Room{Name: string(rune('a' + i))})))
			tn.n.Enqueue(state.PutRoom(state.Room{Name: "q" + string(rune('a'+i))}))
			must(t, tn.n.Consistent(ctx))
		}
		for _, tn := range c.all() {
			c.kill(tn.id)
		}
	}()
	waitFor(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
}

// Validate fills defaults and rejects what cannot work.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want error
	}{
		{"defaults", func(*Config) {}, nil},
		{"unspecified bind without advertise", func(c *Config) { c.Bind = "0.0.0.0:7000" }, ErrConfig},
		{"unspecified bind with advertise", func(c *Config) { c.Bind = "0.0.0.0:7000"; c.Advertise = "10.0.0.1:7000" }, nil},
		{"bad join", func(c *Config) { c.Join = []string{"nope"} }, ErrConfig},
		{"partial tls", func(c *Config) { c.Cert = "x" }, ErrConfig},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout }, ErrConfig},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 }, ErrConfig},
		{"node id with slash", func(c *Config) { c.NodeID = "a/b" }, ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mod(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	var zero Config
	must(t, zero.Validate())
	if zero.HeartbeatTimeout != DefaultHeartbeatTimeout || zero.DataDir != DefaultDataDir || zero.Bind != DefaultBind {
		t.Fatalf("zero config not defaulted: %+v", zero)
	}
}

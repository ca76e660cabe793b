package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// ctlNode is a running admin server on 127.0.0.1 over a Local store, as a node runs it.
type ctlNode struct {
	srv     *admin.Server
	store   *state.Local
	calls   *ctlCalls
	events  *ctlEvents
	dataDir string
}

func startNode(t *testing.T) *ctlNode {
	t.Helper()
	n := &ctlNode{store: state.NewLocal(), calls: &ctlCalls{}, events: &ctlEvents{}, dataDir: t.TempDir()}
	srv, err := admin.New(admin.Config{Listen: "127.0.0.1:0", NodeID: "edge1", Socket: filepath.Join(n.dataDir, admin.SocketName)},
		admin.Deps{Store: n.store, Domain: "video.example.com", Calls: n.calls, Events: n.events})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	n.srv = srv
	t.Setenv("PORTCULLIS_API", srv.URL())
	t.Setenv("PORTCULLIS_TOKEN", "")
	return n
}

// bootstrap makes the first admin token through the socket, as an operator does.
func (n *ctlNode) bootstrap(t *testing.T) string {
	t.Helper()
	out, errOut, code := runT(runToken, "create", "--scope", "admin", "--name", "ops", "--data-dir", n.dataDir)
	if code != 0 {
		t.Fatalf("token create: %d %s", code, errOut)
	}
	secret := strings.TrimSpace(out)
	if !strings.HasPrefix(secret, admin.TokenPrefix) || strings.Contains(secret, "\n") {
		t.Fatalf("stdout %q is not the secret alone", out)
	}
	if !strings.Contains(errOut, "shown this once") {
		t.Fatalf("stderr %q", errOut)
	}
	t.Setenv("PORTCULLIS_TOKEN", secret)
	return secret
}

func runT(f func([]string, io.Writer, io.Writer) int, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := f(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// runOK runs `portcullis ctl ARGS` and fails the test unless it exits 0.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runT(runCtl, args...)
	if code != 0 {
		t.Fatalf("ctl %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

// runFail runs `portcullis ctl ARGS` and fails the test (saying what was tried) unless it exits
// 1 with want in its standard error.
func runFail(t *testing.T, what, want string, args ...string) {
	t.Helper()
	if _, errOut, code := runT(runCtl, args...); code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("%s: exit %d, stderr %q; want 1 and %q", what, code, errOut, want)
	}
}

func wantOut(t *testing.T, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Fatalf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestTokenBootstrapAndTokens(t *testing.T) {
	n := startNode(t)
	// Without a token the CLI says how to get one.
	_, errOut, code := runT(runCtl, "rooms", "list")
	if code != 2 || !strings.Contains(errOut, "portcullis token create") {
		t.Fatalf("no token: %d %s", code, errOut)
	}
	secret := n.bootstrap(t)
	wantOut(t, runOK(t, "tokens", "list"), "NAME", "ops", "admin")
	out, _, code := runT(runToken, "list", "--data-dir", n.dataDir)
	if code != 0 || !strings.Contains(out, "ops") || strings.Contains(out, secret) {
		t.Fatalf("token list: %d %s", code, out)
	}
	// A read token for the dashboard, made over the API, and revoked over the socket.
	out = runOK(t, "tokens", "create", "--scope", "read", "--name", "dashboard", "-o", "json")
	var tc admin.TokenCreated
	if err := json.Unmarshal([]byte(out), &tc); err != nil || tc.Scope != state.ScopeRead {
		t.Fatalf("created %q: %v", out, err)
	}
	runFail(t, "read token writing", "403 forbidden", "--token", tc.Secret, "bans", "add", "192.0.2.1")
	if _, errOut, code := runT(runToken, "revoke", tc.ID, "--data-dir", n.dataDir); code != 0 {
		t.Fatalf("revoke: %s", errOut)
	}
	runFail(t, "revoked token", "401 unauthorized", "--token", tc.Secret, "rooms", "list")
	// Bad input and a missing socket.
	if _, _, code := runT(runToken, "create", "--scope", "admin", "--data-dir", n.dataDir); code != 2 {
		t.Fatalf("create without name: %d", code)
	}
	if _, errOut, code := runT(runToken, "create", "--scope", "root", "--name", "x", "--data-dir", n.dataDir); code != 1 ||
		!strings.Contains(errOut, "scope") {
		t.Fatalf("bad scope: %d %s", code, errOut)
	}
	if _, errOut, code := runT(runToken, "list", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(errOut, "portcullis serve") {
		t.Fatalf("no socket: %d %s", code, errOut)
	}
}

func TestCtlRooms(t *testing.T) {
	n := startNode(t)
	n.bootstrap(t)
	out := runOK(t, "rooms", "create", "boardroom", "--generate", "--inbound", "allowlist", "--allow", "*@partner.example,198.51.100.0/24")
	wantOut(t, out, "room boardroom created", "password (shown once): ")
	pw := strings.TrimSpace(strings.SplitN(out, "password (shown once): ", 2)[1])
	r, _ := n.store.State().Room("boardroom")
	if r.HA1SHA256 != digest.HA1(digest.SHA256, "boardroom", "video.example.com", pw) || len(r.Allow) != 2 {
		t.Fatalf("room %+v", r)
	}
	runOK(t, "rooms", "create", "--password", "lobby-password", "lobby") // flags before the name work too
	out = runOK(t, "rooms", "list")
	wantOut(t, out, "NAME", "boardroom", "allowlist", "lobby", "open")
	out = runOK(t, "-o", "json", "rooms", "show", "boardroom")
	var v admin.RoomView
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Name != "boardroom" || !v.Credentials.SHA256 {
		t.Fatalf("show json %q: %v", out, err)
	}
	runOK(t, "rooms", "update", "lobby", "--inbound", "dnd", "--dnd-code", "0")
	if r, _ := n.store.State().Room("lobby"); r.Inbound != state.InboundDND || r.DNDCode != 0 {
		t.Fatalf("updated %+v", r)
	}
	ctlStdin = strings.NewReader("from stdin 123\n")
	defer func() { ctlStdin = os.Stdin }()
	runOK(t, "rooms", "passwd", "lobby", "--password-stdin")
	if r, _ := n.store.State().Room("lobby"); r.HA1MD5 != digest.HA1(digest.MD5, "lobby", "video.example.com", "from stdin 123") {
		t.Fatal("password from stdin not set")
	}
	// The API's validation reaches the operator with the field named.
	runFail(t, "bad name", "400 invalid: name", "rooms", "create", "bad name", "--generate")
	runFail(t, "bad inbound", "inbound", "rooms", "update", "lobby", "--inbound", "sometimes")
	runOK(t, "rooms", "delete", "lobby")
	runFail(t, "deleted room", "404 not_found", "rooms", "show", "lobby")
}

func TestCtlRegistrationsCallsRecords(t *testing.T) {
	n := startNode(t)
	n.bootstrap(t)
	now := time.Now()
	propose(t, n, state.PutRoom(state.Room{Name: "boardroom", Inbound: state.InboundOpen}))
	propose(t, n, state.PutBinding(state.Binding{Room: "boardroom", Contact: "sip:boardroom@192.0.2.10:5060",
		Source: "192.0.2.10:5060", Transport: "UDP", Node: "edge1", UserAgent: "Cisco Room Kit", Expires: now.Add(time.Hour)}))
	wantOut(t, runOK(t, "registrations"), "boardroom", "192.0.2.10:5060", "Cisco Room Kit")
	wantOut(t, runOK(t, "registrations", "--room", "boardroom"), "sip:boardroom@192.0.2.10:5060")

	propose(t, n, state.PutCall(state.Call{ID: "call-1", Room: "boardroom", Direction: state.Inbound, From: "sip:alice@partner.example",
		Node: "edge1", State: state.CallAnswered, Started: now}))
	wantOut(t, runOK(t, "calls", "list"), "call-1", "alice@partner.example", "answered")
	wantOut(t, runOK(t, "calls", "show", "call-1"), "id:", "call-1")
	wantOut(t, runOK(t, "calls", "hangup", "call-1"), "call call-1 hung up")
	if h := n.calls.hungUp(); len(h) != 1 || h[0] != "call-1" {
		t.Fatalf("hung up %v", h)
	}
	runFail(t, "unknown call", "404", "calls", "hangup", "nope")

	for i := range 5 {
		propose(t, n, state.EndCall(state.CallRecord{Call: state.Call{ID: "r" + string(rune('a'+i)), Room: "boardroom"},
			Ended: now, EndReason: "bye", Status: 200}))
	}
	out, errOut, code := runT(runCtl, "records", "--limit", "2")
	if code != 0 || strings.Count(out, "boardroom") != 2 || !strings.Contains(errOut, "--cursor") {
		t.Fatalf("records page: %s %s", out, errOut)
	}
	out = runOK(t, "records", "--limit", "2", "--all", "-o", "json")
	var p struct{ Items []state.CallRecord }
	if err := json.Unmarshal([]byte(out), &p); err != nil || len(p.Items) != 5 {
		t.Fatalf("all records: %v %s", err, out)
	}
	runFail(t, "bad since", "since", "records", "--since", "yesterday")
}

func TestCtlBansAndLists(t *testing.T) {
	n := startNode(t)
	n.bootstrap(t)
	wantOut(t, runOK(t, "bans", "add", "203.0.113.0/24", "--duration", "2h", "--reason", "scanning"), "banned 203.0.113.0/24 until")
	wantOut(t, runOK(t, "bans", "list"), "203.0.113.0/24", "admin", "scanning")
	wantOut(t, runOK(t, "bans", "show", "203.0.113.0/24"), "strikes:", "1")
	if _, ok := n.store.State().Ban(netip.MustParsePrefix("203.0.113.0/24")); !ok {
		t.Fatal("ban not in the state")
	}
	wantOut(t, runOK(t, "bans", "lift", "203.0.113.0/24"), "lifted")
	if _, ok := n.store.State().Ban(netip.MustParsePrefix("203.0.113.0/24")); ok {
		t.Fatal("ban still in the state")
	}
	runFail(t, "lift twice", "404", "bans", "lift", "203.0.113.0/24")
	runFail(t, "wide ban", "too wide", "bans", "add", "0.0.0.0/0")

	runOK(t, "lists", "set", "--deny", "203.0.113.0/24,198.51.100.66", "--scanner-ua", "friendly-scanner")
	runOK(t, "lists", "add", "allow", "*@partner.example")
	out := runOK(t, "lists", "remove", "deny", "198.51.100.66")
	wantOut(t, out, "allow", "*@partner.example", "deny", "203.0.113.0/24", "scanner-ua", "friendly-scanner")
	if l := n.store.State().Lists(); len(l.Deny) != 1 || len(l.Allow) != 1 || len(l.ScannerUserAgents) != 1 {
		t.Fatalf("lists %+v", l)
	}
	if _, _, code := runT(runCtl, "lists", "remove", "deny", "not-there"); code != 1 {
		t.Fatal("removing a missing entry succeeded")
	}
	if _, _, code := runT(runCtl, "lists", "add", "grey", "x"); code != 2 {
		t.Fatal("unknown list accepted")
	}
}

func TestCtlEventsClusterHealthAudit(t *testing.T) {
	n := startNode(t)
	n.bootstrap(t)
	n.events.push(guard.Event{Time: time.Now(), Source: "203.0.113.5:5060", Rule: guard.RuleScanner, Action: guard.Drop, Reason: "sipvicious"})
	wantOut(t, runOK(t, "events"), "203.0.113.5:5060", "scanner-user-agent", "drop", "sipvicious")
	if out := runOK(t, "events", "--rule", "flood"); strings.Contains(out, "203.0.113.5") {
		t.Fatalf("filter ignored: %s", out)
	}
	// --follow prints refusals as they happen.
	done := make(chan string, 1)
	go func() {
		out, _, _ := runT(runCtl, "events", "--follow", "--count", "1")
		done <- out
	}()
	for n.events.subscribers() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	n.events.push(guard.Event{Time: time.Now(), Source: "198.51.100.1:5060", Rule: guard.RuleFlood, Action: guard.Drop, Reason: "too fast"})
	select {
	case out := <-done:
		wantOut(t, out, "198.51.100.1:5060", "flood", "too fast")
	case <-time.After(10 * time.Second):
		t.Fatal("--follow printed nothing")
	}

	wantOut(t, runOK(t, "cluster", "members"), "edge1", "leader", "true")
	wantOut(t, runOK(t, "cluster", "leader"), "edge1")
	runFail(t, "join on a single node", "single_node", "cluster", "join", "edge2", "10.0.0.2:7000")
	wantOut(t, runOK(t, "health"), "status:", "ok")
	runOK(t, "bans", "add", "192.0.2.7")
	wantOut(t, runOK(t, "audit"), "token:", "(ops)", "ban.add", "192.0.2.7/32")
}

func TestCtlUsage(t *testing.T) {
	startNode(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage"},
		{[]string{"--help"}, 0, "areas and commands"},
		{[]string{"planets"}, 2, "unknown area"},
		{[]string{"rooms"}, 2, "rooms needs a command"},
		{[]string{"rooms", "explode"}, 2, "unknown command"},
		{[]string{"rooms", "show"}, 2, "rooms show NAME"},
		{[]string{"rooms", "list", "-o", "yaml"}, 2, "-o must be table or json"},
		{[]string{"rooms", "list", "--frobnicate"}, 2, "flag provided but not defined"},
		{[]string{"--api", "ftp://x", "--token", "t", "rooms", "list"}, 2, "must be http(s)"},
		{[]string{"--api", "127.0.0.1:1", "--token", "t", "rooms", "list"}, 1, "cannot reach the admin API"},
	} {
		_, errOut, code := runT(runCtl, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("ctl %v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func propose(t *testing.T, n *ctlNode, c state.Command) {
	t.Helper()
	if err := n.store.Propose(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// ctlCalls is the call control of the test node.
type ctlCalls struct {
	mu    sync.Mutex
	hung  []string
	media map[string]any // MediaStats by call ID
}

func (c *ctlCalls) Hangup(ctx context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hung = append(c.hung, id)
	return nil
}

func (c *ctlCalls) MediaStats(id string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.media[id]
	return m, ok
}

func (c *ctlCalls) hungUp() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.hung...)
}

// ctlEvents is the guard event log of the test node.
type ctlEvents struct {
	mu     sync.Mutex
	events []guard.Event
	subs   []chan guard.Event
}

func (e *ctlEvents) push(ev guard.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
	for _, ch := range e.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (e *ctlEvents) subscribers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs)
}

func (e *ctlEvents) Recent(f guard.EventFilter, limit int) []guard.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []guard.Event
	for i := len(e.events) - 1; i >= 0; i-- {
		if f.Rule == "" || e.events[i].Rule == f.Rule {
			out = append(out, e.events[i])
		}
	}
	return out
}

func (e *ctlEvents) Subscribe(ctx context.Context) <-chan guard.Event {
	ch := make(chan guard.Event, 16)
	e.mu.Lock()
	e.subs = append(e.subs, ch)
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		for i, c := range e.subs {
			if c == ch {
				e.subs = append(e.subs[:i], e.subs[i+1:]...)
				break
			}
		}
		e.mu.Unlock()
		close(ch)
	}()
	return ch
}

func (e *ctlEvents) Counts() map[string]uint64 { return map[string]uint64{} }

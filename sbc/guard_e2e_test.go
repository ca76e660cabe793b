package sbc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/internal/udpstat"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// End-to-end tests of the caller filter (issue 5) with real attack tools and real peers.
//
// Attackers send from 127.0.0.x addresses other than 127.0.0.1: the node listens on 127.0.0.1,
// and the guard never bans one of the node's own addresses (nor a registered room's), so a scan
// from there would be refused but never banned.

// svShim runs a SIPVicious tool in its own Python with two fixes: the source address (-b)
// reaches the scanner object (svwar and svcrack 0.3.3 parse -b but never pass it on, so they
// would send from 127.0.0.1, one of the node's own addresses, which the guard never bans), and an
// optional User-Agent replaces friendly-scanner (no option for it exists). Arguments: the tool's
// path, its name, then its own arguments.
const svShim = `import functools, importlib, os, sys
path, tool = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
mod = importlib.import_module('sipvicious.' + tool)
cls = getattr(mod, {'svmap': 'DrinkOrSip', 'svwar': 'TakeASip', 'svcrack': 'ASipOfRedWine'}[tool])
init, bind, ua = cls.__init__, os.environ.get('SV_BIND', ''), os.environ.get('SV_USERAGENT')
def patched(self, *a, **k):
    if bind:
        k['bindingip'] = bind
    init(self, *a, **k)
cls.__init__ = patched
if ua is not None:
    mod.makeRequest = functools.partial(mod.makeRequest, useragent=ua)
sys.argv = [tool] + sys.argv[3:]
sys.exit(mod.main())
`

// svRun is one run of a SIPVicious tool against the node from src.
type svRun struct {
	tool, src string
	userAgent string // "" keeps the tool's own
	args      []string
	timeout   time.Duration
}

// run runs the tool (through svShim, with the interpreter of its #! line) in a scratch HOME (it
// keeps sessions there) and returns what it printed.
func (r svRun) run(t *testing.T, n *Node) string {
	t.Helper()
	bin := testpeer.Require(t, r.tool)
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		t.Fatal(err)
	}
	head, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(head), "\n")
	python := strings.Fields(strings.TrimPrefix(line, "#!"))
	if !strings.HasPrefix(line, "#!") || len(python) == 0 {
		t.Fatalf("%s: no interpreter line", real)
	}
	dir := t.TempDir()
	shim := filepath.Join(dir, "svshim.py")
	if err := os.WriteFile(shim, []byte(svShim), 0o600); err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(n.addr(t, "udp"))
	args := append(slices.Clone(python[1:]), shim, real, r.tool, "-p", strconv.Itoa(int(ap.Port())), "-b", r.src, "-x", r.src,
		"-P", strconv.Itoa(freeUDPPortOn(t, r.src)))
	args = append(append(args, r.args...), ap.Addr().String())
	timeout := r.timeout
	if timeout == 0 {
		timeout = 25 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "SV_BIND="+r.src)
	if r.userAgent != "" {
		cmd.Env = append(cmd.Env, "SV_USERAGENT="+r.userAgent)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: still running after %s\n%s", r.tool, strings.Join(r.args, " "), timeout, out)
	}
	t.Logf("%s %s from %s (%s, exit %v):\n%s", r.tool, strings.Join(r.args, " "), r.src, time.Since(start).Round(time.Millisecond), err, out)
	return string(out)
}

// freeUDPPortOn returns a UDP port on ip that was free a moment ago.
func freeUDPPortOn(t *testing.T, ip string) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// events returns the guard's events from src (any rule when rule is "").
func events(n *Node, src, rule string) []guard.Event {
	f := guard.EventFilter{Rule: rule}
	if src != "" {
		a := netip.MustParseAddr(src)
		f.Source = netip.PrefixFrom(a, a.BitLen())
	}
	return n.Guard().Recent(f, 0)
}

// banOf returns the ban in force on src, if any.
func banOf(n *Node, src string) (state.Ban, bool) {
	a := netip.MustParseAddr(src)
	for _, b := range n.Store().State().Bans(time.Now()) {
		if b.Prefix.Contains(a) {
			return b, true
		}
	}
	return state.Ban{}, false
}

func ruleSummary(evs []guard.Event) string {
	m := map[string]int{}
	for _, e := range evs {
		m[e.Rule+"/"+e.Action.String()]++
	}
	return fmt.Sprint(m)
}

// TestSIPViciousSvmap: svmap finds no SIP device on the node; its probes are scanner events and
// the scanning address is banned.
func TestSIPViciousSvmap(t *testing.T) {
	testpeer.Require(t, "svmap")
	n := startNode(t, callConfig(t))
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	for _, tc := range []struct{ src, method string }{{"127.0.0.11", "OPTIONS"}, {"127.0.0.12", "INVITE"}, {"127.0.0.13", "REGISTER"}} {
		t.Run(tc.method, func(t *testing.T) {
			out := svRun{tool: "svmap", src: tc.src, args: []string{"-m", tc.method}}.run(t, n)
			if strings.Contains(out, "SIP Device") || strings.Contains(out, "portcullis") || !strings.Contains(out, "found nothing") {
				t.Fatalf("svmap found something:\n%s", out)
			}
			if tc.method == "REGISTER" {
				// svmap's REGISTER has a Contact of "None": the SIP parser discards it before
				// the guard sees it (no answer, no event).
				t.Logf("events: %s", ruleSummary(events(n, tc.src, "")))
				return
			}
			evs := events(n, tc.src, guard.RuleScanner)
			if len(evs) == 0 {
				t.Fatalf("no scanner-user-agent event; events: %s", ruleSummary(events(n, tc.src, "")))
			}
			if e := evs[0]; e.Action != guard.Drop || e.Method != tc.method || !strings.Contains(e.UserAgent, "friendly-scanner") {
				t.Fatalf("event %+v", e)
			}
			waitFor(t, func() bool { _, ok := banOf(n, tc.src); return ok })
			if b, _ := banOf(n, tc.src); b.Rule != guard.RuleScanner {
				t.Fatalf("ban %+v", b)
			}
		})
	}
	if inv := receivedInvites(room); len(inv) != 0 {
		t.Fatalf("the room rang during the scan:\n%s", inv[0])
	}
}

// svDictionary writes a dictionary file (one entry per line) and returns its path.
func svDictionary(t *testing.T, entries []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dict.txt")
	if err := os.WriteFile(p, []byte(strings.Join(entries, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// svwarFound returns the extensions of svwar's result table.
func svwarFound(out string) []string {
	var found []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Split(l, "|"); len(f) == 4 && strings.TrimSpace(f[1]) != "Extension" {
			found = append(found, strings.TrimSpace(f[1]))
		}
	}
	return found
}

// TestSIPViciousSvwar: svwar enumerates extensions with each method, with its own User-Agent
// (extensions 100-200 at the node's IP) and in compact mode (no User-Agent at all; the real rooms
// first, then 100-200, at our domain): it finds no extension, the rooms never ring, and the guard
// says why.
func TestSIPViciousSvwar(t *testing.T) {
	testpeer.Require(t, "svwar")
	n := startNode(t, callConfig(t))
	board := newTestUA(t, "board")
	board.register(n, "boardroom", "s3cret-board")
	r2 := newTestUA(t, "room2")
	r2.register(n, "room2", "room2-pass")
	words := []string{"boardroom", "room2"}
	for i := 100; i <= 200; i++ {
		words = append(words, strconv.Itoa(i))
	}
	dict := svDictionary(t, words)
	tests := []struct {
		name, src, method string
		compact           bool
		wantRule          string // an event of this rule from the source ("": none required)
		wantBan           string // the ban rule ("": no ban)
	}{
		{"REGISTER", "127.0.0.21", "REGISTER", false, guard.RuleScanner, guard.RuleScanner},
		{"INVITE", "127.0.0.22", "INVITE", false, guard.RuleScanner, guard.RuleScanner},
		{"OPTIONS", "127.0.0.23", "OPTIONS", false, guard.RuleScanner, guard.RuleScanner},
		// compact: no User-Agent. REGISTER: every user is challenged alike, svwar gives up;
		// forced on, it finds the real room's challenge the same as the unknown user's.
		{"REGISTER compact", "127.0.0.24", "REGISTER", true, "", ""},
		{"REGISTER compact --force", "127.0.0.27", "REGISTER", true, "", ""},
		// INVITE: its probe (a random number calling itself at our domain) is a ghost call,
		// dropped: svwar sees no server.
		{"INVITE compact", "127.0.0.25", "INVITE", true, guard.RuleGhostCall, ""},
		// OPTIONS: every user gets the same 200 until the source is banned for enumeration.
		{"OPTIONS compact", "127.0.0.26", "OPTIONS", true, guard.RuleEnumeration, guard.RuleEnumeration},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// the tool's own range, or the dictionary that starts with the real rooms
			args := []string{"-m", tc.method, "-e", "100-200", "--maximumtime", "2"}
			if tc.compact {
				args = []string{"-m", tc.method, "-d", dict, "--maximumtime", "2", "-c", "--domain", n.cfg.SIP.Domain}
			}
			if strings.HasSuffix(tc.name, "--force") {
				args = append(args, "--force")
			}
			out := svRun{tool: "svwar", src: tc.src, args: args}.run(t, n)
			if found := svwarFound(out); len(found) > 0 || !strings.Contains(out, "found nothing") || strings.Contains(out, "exists") {
				t.Fatalf("svwar found %q:\n%s", found, out)
			}
			evs := events(n, tc.src, "")
			t.Logf("events from %s: %s", tc.src, ruleSummary(evs))
			if tc.wantRule != "" && len(events(n, tc.src, tc.wantRule)) == 0 {
				t.Fatalf("no %s event from %s: %s", tc.wantRule, tc.src, ruleSummary(evs))
			}
			b, banned := banOf(n, tc.src)
			switch {
			case tc.wantBan == "" && banned:
				t.Fatalf("unexpected ban %+v", b)
			case tc.wantBan != "" && (!banned || b.Rule != tc.wantBan):
				t.Fatalf("ban %+v (banned %v), want rule %s", b, banned, tc.wantBan)
			}
		})
	}
	t.Cleanup(func() {
		for _, u := range []*testUA{board, r2} {
			if inv := receivedInvites(u); len(inv) != 0 {
				t.Errorf("%s rang during the scan:\n%s", u.name, inv[0])
			}
		}
	})
}

// TestSIPViciousSvcrack: svcrack guesses boardroom's password from a dictionary whose last
// word is the real one. With its own User-Agent it is refused at once (scanner); in compact mode
// (no User-Agent) and with an ordinary phone's User-Agent it gets its challenges and is banned
// for brute force after AuthFailures wrong answers, long before the last word. It never prints
// the password, and the room stays registered and reachable.
func TestSIPViciousSvcrack(t *testing.T) {
	testpeer.Require(t, "svcrack")
	const password = "s3cret-board"
	cfg := callConfig(t)
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	room.register(n, "boardroom", password)
	var words []string
	for i := range 60 {
		words = append(words, fmt.Sprintf("guess%02d", i))
	}
	dict := svDictionary(t, append(words, password))
	tests := []struct {
		name, src, ua string
		compact       bool
		wantBan       string
	}{
		{"friendly-scanner", "127.0.0.31", "", false, guard.RuleScanner},
		{"compact without User-Agent", "127.0.0.32", "", true, guard.RuleBruteForce},
		{"spoofed User-Agent", "127.0.0.33", "Polycom/6.4.0 RealPresence-Group-500", false, guard.RuleBruteForce},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"-u", "boardroom", "-d", dict, "--maximumtime", "2"}
			if tc.compact {
				args = append(args, "-c")
			}
			out := svRun{tool: "svcrack", src: tc.src, userAgent: tc.ua, args: args}.run(t, n)
			if strings.Contains(out, password) || strings.Contains(out, "The password for") || strings.Contains(out, "Password") {
				t.Fatalf("svcrack learned something:\n%s", out)
			}
			// it did not run out of words: the node fell silent under it
			if strings.Contains(out, "no more passwords") || !strings.Contains(out, "no server response") &&
				!strings.Contains(out, "since we last received a response") {
				t.Fatalf("svcrack was not stopped by silence:\n%s", out)
			}
			evs := events(n, tc.src, "")
			t.Logf("events from %s: %s", tc.src, ruleSummary(evs))
			b, ok := banOf(n, tc.src)
			if !ok || b.Rule != tc.wantBan {
				t.Fatalf("ban %+v (banned %v), want rule %s", b, ok, tc.wantBan)
			}
			if len(events(n, tc.src, tc.wantBan)) == 0 {
				t.Fatalf("no %s event", tc.wantBan)
			}
			t.Logf("ban: %s", b.Reason)
		})
	}
	t.Cleanup(func() {
		if len(n.reg.Bindings("boardroom")) == 0 {
			t.Error("the room lost its registration")
		}
	})
}

// ghostCall sends one INVITE for ruri from src with SIPp (testdata/ghost/ghost_invite.xml); the
// returned process fails when the node answers anything.
func ghostCall(t *testing.T, n *Node, src, ruri, ua string) *sipp {
	t.Helper()
	return startSIPp(t, n.addr(t, "udp"), "-sf", "../ghost/ghost_invite.xml", "-i", src, "-p", strconv.Itoa(freeUDPPortOn(t, src)),
		"-m", "1", "-key", "ruri", ruri, "-key", "ua", ua, "-timeout", "10s", "-timeout_error")
}

// TestGhostCallsSIPp: INVITEs to the node's bare IP, to numbers, to users that are no room and
// from a scanner never reach the registered room (a SIPp UAS), get no answer at all, and each
// leaves an event of the expected rule; then a real caller still reaches the room.
func TestGhostCallsSIPp(t *testing.T) {
	testpeer.Require(t, "sipp")
	n := startNode(t, callConfig(t))
	uas := sippRoom(t, n, "boardroom", "s3cret-board", "uas.xml", 1)
	addr, domain := n.addr(t, "udp"), n.cfg.SIP.Domain
	ghosts := []struct {
		name, src, ruri, ua, rule string
	}{
		{"bare IP", "127.0.0.41", "sip:" + addr, "Caller-Sim", guard.RuleGhostCall},
		{"number at our IP", "127.0.0.42", "sip:100@" + addr, "Caller-Sim", guard.RuleGhostCall},
		{"number at our domain", "127.0.0.43", "sip:100@" + domain, "Caller-Sim", guard.RuleGhostCall},
		{"unknown user at our domain", "127.0.0.44", "sip:sales@" + domain, "Caller-Sim", guard.RuleUnknownUser},
		{"unknown user at our IP", "127.0.0.45", "sip:sales@" + addr, "Caller-Sim", guard.RuleGhostCall},
		{"scanner calling the room", "127.0.0.46", "sip:boardroom@" + domain, "friendly-scanner", guard.RuleScanner},
		{"scanner calling the room by IP", "127.0.0.47", "sip:boardroom@" + addr, "sipvicious", guard.RuleScanner},
	}
	procs := make([]*sipp, len(ghosts))
	for i, g := range ghosts {
		procs[i] = ghostCall(t, n, g.src, g.ruri, g.ua)
	}
	for i, g := range ghosts {
		if err := <-procs[i].done; err != nil {
			t.Errorf("%s: the node answered (or SIPp failed): %v", g.name, err)
			continue
		}
		evs := events(n, g.src, "")
		if len(evs) != 1 || evs[0].Rule != g.rule || evs[0].Action != guard.Drop || evs[0].Method != "INVITE" {
			t.Errorf("%s: events %+v, want one %s drop", g.name, evs, g.rule)
			continue
		}
		t.Logf("%s (%s): %s, %s", g.name, g.ruri, evs[0].Rule, evs[0].Reason)
	}
	if t.Failed() {
		t.FailNow()
	}
	// The scenario does notice an answer: room2 exists but is not registered, which an allowed
	// caller (here the node's own address) learns with 480; a stranger gets nothing, as for a
	// name that is no room (TestStealthStrangerInvites).
	if err := <-ghostCall(t, n, "127.0.0.1", "sip:room2@"+domain, "Caller-Sim").done; err == nil || !strings.Contains(err.Error(), "480") {
		t.Fatalf("a call answered 480 went unnoticed by the ghost scenario: %v", err)
	}
	// The room's UAS is still waiting for its first call: a real caller reaches it.
	sippCall(t, n, "boardroom", "uac.xml", 1)
	uas.wait(t)
	if r := records(t, n, 1); len(r) != 1 || r[0].Status != 200 {
		t.Fatalf("records %+v", r)
	}
	msgs := uas.messages()
	if got := strings.Count(msgs, "\nINVITE sip:"); got != 1 || strings.Contains(msgs, "ghost") || strings.Contains(msgs, "Ghost") {
		t.Fatalf("the room saw %d INVITEs (want only the real caller's):\n%s", got, msgs)
	}
}

// receivedInvites returns the dialog-creating INVITEs a test UA received, as text.
func receivedInvites(u *testUA) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, m := range u.received {
		if strings.HasPrefix(m, "INVITE ") {
			out = append(out, m)
		}
	}
	return out
}

// headerLines returns the header lines of a message's text as name, value pairs.
func headerLines(msg string) [][2]string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	var out [][2]string
	for _, l := range strings.Split(head, "\r\n")[1:] {
		if name, value, ok := strings.Cut(l, ":"); ok {
			out = append(out, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
		}
	}
	return out
}

// roomEvents returns the guard's events for a room and rule.
func roomEvents(n *Node, room, rule string) []guard.Event {
	return n.Guard().Recent(guard.EventFilter{Room: room, Rule: rule}, 0)
}

// TestGuardRoomPolicies drives each room inbound policy end to end through the B2BUA: outside
// callers (test UAs) call rooms (registered test UAs) and the test checks what the caller got,
// what the room saw and the event the guard recorded.
func TestGuardRoomPolicies(t *testing.T) {
	cfg := callConfig(t)
	code603, code0 := 603, 0
	cfg.Rooms = append(cfg.Rooms,
		config.Room{Name: "lobby", Password: "lobby-pass", Inbound: "open", AutoAnswer: "allow", DropIn: "allow"},
		config.Room{Name: "vip", Password: "vip-pass", Inbound: "allowlist",
			Allow: []string{"ceo@partner.example", "*@trusted.example", "192.0.2.0/24"}},
		config.Room{Name: "lan", Password: "lan-pass", Inbound: "allowlist", Allow: []string{"127.0.0.0/8"}},
		config.Room{Name: "quiet", Password: "quiet-pass", Inbound: "dnd", DNDCode: &code603},
		config.Room{Name: "silent", Password: "silent-pass", Inbound: "dnd", DNDCode: &code0},
		config.Room{Name: "huddle", Password: "huddle-pass", Inbound: "open", AutoAnswer: "block", DropIn: "allow"},
		config.Room{Name: "meeting", Password: "meeting-pass", Inbound: "open", DropIn: "deny", Allow: []string{"boss@partner.example"}},
	)
	n := startNode(t, cfg)
	rooms := map[string]*testUA{}
	for _, r := range cfg.Rooms[2:] {
		u := newTestUA(t, r.Name)
		u.register(n, r.Name, r.Password)
		rooms[r.Name] = u
	}
	caller := newTestUA(t, "caller")
	// call places a call from user@host to room and returns it (final nil: no answer).
	call := func(room, user, host string, hdrs ...sip.Header) *testCall {
		t.Helper()
		return caller.invite(n, roomURI(n, room), user, host, testSDP, nil, hdrs...)
	}
	connected := func(t *testing.T, c *testCall, what string) {
		t.Helper()
		if c.final == nil || c.final.StatusCode != 200 {
			t.Fatalf("%s: got %v, want 200", what, c.final)
		}
		c.ack(c.final)
	}
	hangup := func(t *testing.T, c *testCall) {
		t.Helper()
		if res := c.do(sip.BYE, ""); res.StatusCode != 200 {
			t.Fatalf("BYE: %d", res.StatusCode)
		}
	}
	refused := func(t *testing.T, c *testCall, code int, room, rule string) {
		t.Helper()
		if c.final == nil || c.final.StatusCode != code {
			t.Fatalf("got %v, want %d", c.final, code)
		}
		evs := roomEvents(n, room, rule)
		if len(evs) == 0 || evs[0].Action != guard.Reject || evs[0].Code != code {
			t.Fatalf("events for %s/%s: %+v", room, rule, evs)
		}
		t.Logf("%s refused %s with %d: %s", room, evs[0].From, code, evs[0].Reason)
	}

	t.Run("open", func(t *testing.T) {
		c := call("lobby", "visitor", "outside.example")
		connected(t, c, "stranger to an open room")
		inv := receivedInvites(rooms["lobby"])
		if len(inv) != 1 || !strings.Contains(inv[0], "visitor@outside.example") {
			t.Fatalf("lobby got %d INVITEs: %v", len(inv), inv)
		}
		hangup(t, c)
	})

	t.Run("allowlist", func(t *testing.T) {
		for _, from := range [][2]string{{"ceo", "partner.example"}, {"anyone", "trusted.example"}} {
			c := call("vip", from[0], from[1])
			connected(t, c, from[0]+"@"+from[1]+" (listed)")
			hangup(t, c)
		}
		refused(t, call("vip", "visitor", "outside.example"), 403, "vip", guard.RuleRoomAllowlist)
		refused(t, call("vip", "ceo", "partner.example.evil"), 403, "vip", guard.RuleRoomAllowlist)
		if inv := receivedInvites(rooms["vip"]); len(inv) != 2 {
			t.Fatalf("vip got %d INVITEs, want the 2 listed callers'", len(inv))
		}
		// a source CIDR lets any caller URI from there in
		c := call("lan", "visitor", "outside.example")
		connected(t, c, "caller from a listed CIDR")
		hangup(t, c)
	})

	t.Run("dnd with a code", func(t *testing.T) {
		refused(t, call("quiet", "visitor", "outside.example"), 603, "quiet", guard.RuleRoomDND)
		refused(t, call("quiet", "ceo", "partner.example"), 603, "quiet", guard.RuleRoomDND)
		if inv := receivedInvites(rooms["quiet"]); len(inv) != 0 {
			t.Fatalf("a dnd room got %d INVITEs", len(inv))
		}
	})

	t.Run("dnd silent", func(t *testing.T) {
		caller.timeout = 2 * time.Second
		defer func() { caller.timeout = 0 }()
		before := len(caller.seen())
		c := call("silent", "visitor", "outside.example")
		if c.final != nil {
			t.Fatalf("got %v, want no answer", c.final)
		}
		if got := caller.seen()[before:]; strings.Contains(got, "SIP/2.0 ") {
			t.Fatalf("the caller got an answer:\n%s", got)
		}
		// one event per copy of the INVITE: the caller's UDP retransmissions are dropped too
		evs := roomEvents(n, "silent", guard.RuleRoomDND)
		if len(evs) == 0 {
			t.Fatal("no room-dnd event")
		}
		for _, e := range evs {
			if e.Action != guard.Drop || e.Code != 0 || e.Room != "silent" {
				t.Fatalf("event %+v", e)
			}
		}
		t.Logf("%d room-dnd drop events for one call (its retransmissions): %s", len(evs), evs[0].Reason)
		if inv := receivedInvites(rooms["silent"]); len(inv) != 0 {
			t.Fatalf("a dnd room got %d INVITEs", len(inv))
		}
	})

	// Auto-answer requests as phones and room systems send them, and two harmless headers of
	// the same names that must survive.
	autoHdrs := []sip.Header{
		sip.NewHeader("Call-Info", "<sip:video.test>;answer-after=0"),
		sip.NewHeader("Alert-Info", "<http://www.notused.com>;info=alert-autoanswer;delay=0"),
		sip.NewHeader("Alert-Info", "Auto Answer"),
		sip.NewHeader("Alert-Info", "<http://127.0.0.1/Bellcore-dr4>;info=Ring Answer"),
		sip.NewHeader("Alert-Info", "info=intercom"),
		sip.NewHeader("Answer-Mode", "Auto"),
		sip.NewHeader("P-Auto-Answer", "normal"),
	}
	harmless := []sip.Header{
		sip.NewHeader("Call-Info", "<http://www.example.com/alice/photo.jpg>;purpose=icon"),
		sip.NewHeader("Alert-Info", "<http://www.example.com/sounds/moo.wav>"),
	}
	autoAnswerIn := func(inv string) []string {
		var out []string
		for _, h := range headerLines(inv) {
			if guard.IsAutoAnswer(h[0], h[1]) {
				out = append(out, h[0]+": "+h[1])
			}
		}
		return out
	}
	t.Run("auto_answer block", func(t *testing.T) {
		c := call("huddle", "visitor", "outside.example", append(append([]sip.Header{}, autoHdrs...), harmless...)...)
		connected(t, c, "call with auto-answer headers")
		hangup(t, c)
		inv := receivedInvites(rooms["huddle"])
		if len(inv) != 1 {
			t.Fatalf("huddle got %d INVITEs", len(inv))
		}
		if aa := autoAnswerIn(inv[0]); len(aa) > 0 {
			t.Fatalf("the room got auto-answer requests: %q\n%s", aa, inv[0])
		}
		for _, h := range harmless {
			if !strings.Contains(inv[0], h.Value()) {
				t.Errorf("harmless %s: %s was stripped too", h.Name(), h.Value())
			}
		}
	})
	t.Run("auto_answer allow", func(t *testing.T) {
		c := call("lobby", "visitor", "outside.example", append(append([]sip.Header{}, autoHdrs...), harmless...)...)
		connected(t, c, "call with auto-answer headers")
		hangup(t, c)
		inv := receivedInvites(rooms["lobby"])
		last := inv[len(inv)-1]
		// Call-Info and Alert-Info are relayed; Answer-Mode and P-Auto-Answer are never relayed
		// (they are not on the B2BUA's pass list), whatever the room's policy.
		for _, h := range append(autoHdrs[:5:5], harmless...) {
			if !strings.Contains(last, h.Value()) {
				t.Errorf("auto_answer allow: %s: %s did not reach the room", h.Name(), h.Value())
			}
		}
		t.Logf("auto-answer requests the room got: %q", autoAnswerIn(last))
	})
	t.Run("auto_answer block intercom Call-Info", func(t *testing.T) {
		// The guard's own definition (guard.IsAutoAnswer) also counts Call-Info intercom and
		// auto-answer parameters: what the policy promises to strip.
		hdrs := []sip.Header{sip.NewHeader("Call-Info", "<sip:video.test>;intercom=true"),
			sip.NewHeader("Call-Info", "<sip:video.test>;auto-answer")}
		c := call("huddle", "visitor", "outside.example", hdrs...)
		connected(t, c, "call with intercom Call-Info")
		hangup(t, c)
		inv := receivedInvites(rooms["huddle"])
		if aa := autoAnswerIn(inv[len(inv)-1]); len(aa) > 0 {
			t.Fatalf("the room got auto-answer requests that guard.IsAutoAnswer flags: %q "+
				"(the B2BUA strips by its own, narrower test, b2bua.autoAnswer in sbc/b2bua/headers.go)", aa)
		}
	})

	t.Run("drop_in deny", func(t *testing.T) {
		first := call("meeting", "visitor", "outside.example")
		connected(t, first, "first caller")
		waitFor(t, func() bool { return n.calls.Active() == 1 })
		refused(t, call("meeting", "stranger", "elsewhere.example"), 486, "meeting", guard.RuleRoomDropIn)
		boss := call("meeting", "boss", "partner.example")
		connected(t, boss, "allow-listed caller while the room is in a call")
		if inv := receivedInvites(rooms["meeting"]); len(inv) != 2 || strings.Contains(strings.Join(inv, ""), "stranger") {
			t.Fatalf("meeting got %d INVITEs (want visitor's and boss's)", len(inv))
		}
		hangup(t, boss)
		hangup(t, first)
		waitFor(t, func() bool { return n.calls.Active() == 0 })
		// the meeting is over: strangers may call again
		again := call("meeting", "stranger", "elsewhere.example")
		connected(t, again, "stranger after the meeting")
		hangup(t, again)
	})
}

// floodSource is one socket of the flood generator and the requests it sends, built once. Each
// copy sent gets a new Via branch (a counter written over the branch's last 8 hex digits, in
// place): copies with the same branch would be retransmissions, which the transaction layer
// absorbs before the guard sees them.
type floodSource struct {
	conn *net.UDPConn
	msgs [][]byte
	at   []int // where each message's branch counter goes
	n    uint32
}

func newFloodSource(conn *net.UDPConn, msgs [][]byte) *floodSource {
	s := &floodSource{conn: conn, msgs: msgs}
	for _, m := range msgs {
		s.at = append(s.at, bytes.Index(m, []byte(";rport"))-8)
	}
	return s
}

// send sends the next request.
func (s *floodSource) send() error {
	k := s.n % uint32(len(s.msgs))
	m, i := s.msgs[k], s.at[k]
	const hexd = "0123456789abcdef"
	for k, v := 0, s.n; k < 8; k, v = k+1, v>>4 {
		m[i+7-k] = hexd[v&15]
	}
	s.n++
	_, err := s.conn.Write(m)
	return err
}

// floodMessages builds the requests one flood socket sends: OPTIONS to the domain only (the
// rate limit and the flood ban have to catch those), or a mix of OPTIONS, REGISTER and INVITE
// for junk users (enumeration and the ghost rules catch those first).
func floodMessages(local, node, domain string, optionsOnly bool, k int) [][]byte {
	var out [][]byte
	for i := range k {
		method, user := "OPTIONS", ""
		if !optionsOnly {
			method = [...]string{"OPTIONS", "REGISTER", "INVITE"}[i%3]
			user = fmt.Sprintf("%d", 1000+i*7)
			if i%2 == 1 {
				user = "junk" + randHex()[:6]
			}
		}
		ruri, to := "sip:"+domain, "<sip:"+domain+">"
		if user != "" {
			ruri, to = "sip:"+user+"@"+domain, "<sip:"+user+"@"+domain+">"
		}
		if method == "REGISTER" {
			ruri = "sip:" + domain
		}
		body := ""
		if method == "INVITE" {
			body = "v=0\r\no=- 1 1 IN IP4 " + strings.Split(local, ":")[0] + "\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
		}
		msg := method + " " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-fl" + randHex() + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:flood@" + strings.Split(local, ":")[0] + ">;tag=" + randHex() + "\r\nTo: " + to + "\r\n" +
			"Call-ID: " + randHex() + "@flood\r\nCSeq: 1 " + method + "\r\nContact: <sip:flood@" + local + ">\r\n" +
			"User-Agent: Generic-Phone/1.0\r\n"
		if body != "" {
			msg += "Content-Type: application/sdp\r\n"
		}
		msg += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		out = append(out, []byte(msg))
	}
	return out
}

// floodCall is one legitimate call: INVITE, 200 (the setup time), ACK, BYE. It reports instead
// of failing the test: it runs on its own goroutine.
func floodCall(caller *testUA, addr, domain string) (time.Duration, error) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "boardroom", Host: domain})
	req.SetDestination(addr)
	from := &sip.FromHeader{DisplayName: "Partner", Address: sip.Uri{Scheme: "sip", User: "partner", Host: "partner.example"}}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "boardroom", Host: domain}})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "caller", Host: "127.0.0.1", Port: caller.port}})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(testSDP))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	tx, err := caller.cli.TransactionRequest(ctx, req)
	if err != nil {
		return 0, err
	}
	defer tx.Terminate()
	var res *sip.Response
	for res == nil {
		select {
		case r := <-tx.Responses():
			if r.StatusCode >= 200 {
				res = r
			}
		case <-tx.Done():
			return 0, fmt.Errorf("INVITE: %v", tx.Err())
		case <-ctx.Done():
			return 0, fmt.Errorf("INVITE (Call-ID %s): no final answer within 5s", req.CallID().Value())
		}
	}
	setup := time.Since(start)
	if res.StatusCode != 200 {
		return setup, fmt.Errorf("INVITE: %d %s", res.StatusCode, res.Reason)
	}
	target := res.Contact().Address
	ack := sip.NewRequest(sip.ACK, target)
	ack.SetDestination(addr)
	bye := sip.NewRequest(sip.BYE, target)
	bye.SetDestination(addr)
	for i, r := range []*sip.Request{ack, bye} {
		r.AppendHeader(sip.HeaderClone(req.From()))
		r.AppendHeader(sip.HeaderClone(res.To()))
		r.AppendHeader(sip.HeaderClone(req.CallID()))
		r.AppendHeader(&sip.CSeqHeader{SeqNo: uint32(1 + i), MethodName: r.Method})
	}
	if err := caller.cli.WriteRequest(ack); err != nil {
		return setup, fmt.Errorf("ACK: %w", err)
	}
	br, err := caller.cli.Do(ctx, bye)
	if err != nil || br.StatusCode != 200 {
		return setup, fmt.Errorf("BYE: %v %v", err, br)
	}
	return setup, nil
}

// retransmit2xx makes a test UA answer new INVITEs as RFC 3261 13.3.1.4 asks of a UAS: its 200
// is sent again at T1, 2·T1, … (at most T2 apart) until the ACK arrives. sipgo leaves that to the
// application and testUA does not do it; real room systems do, and under a flood a 200 lost in
// the node's full receive buffer would otherwise leave the call ringing.
func retransmit2xx(u *testUA) {
	var mu sync.Mutex
	acks := map[string]chan struct{}{}
	u.srv.OnRequest(sip.ACK, func(req *sip.Request, tx sip.ServerTransaction) {
		u.log(req.String())
		mu.Lock()
		if ch, ok := acks[req.CallID().Value()]; ok {
			close(ch)
			delete(acks, req.CallID().Value())
		}
		mu.Unlock()
	})
	u.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.To().Params.Has("tag") {
			u.answer(req, tx, testSDP)
			return
		}
		acked := make(chan struct{})
		mu.Lock()
		acks[req.CallID().Value()] = acked
		mu.Unlock()
		tag := sip.GenerateTagN(10)
		contact := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: u.name, Host: "127.0.0.1", Port: u.port}}
		ring := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
		ring.To().Params.Add("tag", tag)
		ring.AppendHeader(contact)
		_ = tx.Respond(ring)
		ok := sip.NewResponseFromRequest(req, 200, "OK", []byte(testSDP))
		ok.To().Params.Add("tag", tag)
		ok.AppendHeader(sip.HeaderClone(contact))
		ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		_ = tx.Respond(ok)
		for wait, total := 500*time.Millisecond, time.Duration(0); total < 32*time.Second; wait = min(2*wait, 4*time.Second) {
			select {
			case <-acked:
				return
			case <-time.After(wait):
				total += wait
				_ = tx.Respond(ok)
			}
		}
		mu.Lock()
		delete(acks, req.CallID().Value())
		mu.Unlock()
	})
}

// udpDrops returns the receive-buffer drops of the UDP socket bound to port, as the kernel
// counts them, or -1.
func udpDrops(port uint16) int {
	socks, _ := udpstat.Read()
	for _, s := range socks {
		if s.Port == port {
			return int(s.Drops)
		}
	}
	return -1
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// floodRaceRate is the flood rate under -race, where the node's code runs ten times slower or
// more and shares the test binary's two cores with the generator and, in CI, with the other
// packages' tests. With both cores also busy elsewhere, 10,000/s and even 4,000/s overran it
// (setup p50 over 3 s: the backlog, not the guard); 1,500/s keeps setup p99 under 200 ms. A
// normal build on the same loaded machine keeps setup p99 under 10 ms at 25,000/s.
const floodRaceRate = 1500

// TestGuardFlood floods the node from 249 addresses of 127.0.0.0/8 (4 ports each) with OPTIONS,
// REGISTER and INVITE for junk users at 25,000 requests/s for five seconds (1,500/s under -race),
// while the room re-registers twice and a caller from 127.0.0.1 places 120 calls to it, 20 per
// second. The caller is not allow-listed: it gets the per-source rate limit like anyone. The room
// keeps its registration, at least 99% of the calls complete, their setup p99 stays under
// 200 ms, and the flood's sources are banned (OPTIONS-only ones for flood, the others for
// enumeration) and then dropped before parsing. The figures are logged.
func TestGuardFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	rate := 25000 // requests/s the generator aims at
	if raceEnabled() {
		rate = floodRaceRate
	}
	const (
		duration = 5 * time.Second
		perIP    = 4 // ports per source address
		calls    = 120
		interval = 48 * time.Millisecond // 20.8 calls/s: inside the default 20/s + burst 40
		senders  = 4
	)
	cfg := callConfig(t)
	// calls overlap when one is slow: the room takes them all (a multisite MCU room)
	cfg.Rooms[0].DropIn = "allow"
	n := startNode(t, cfg)
	addr, domain := n.addr(t, "udp"), cfg.SIP.Domain
	nodeAP := netip.MustParseAddrPort(addr)
	room := newTestUA(t, "room")
	retransmit2xx(room)
	room.register(n, "boardroom", "s3cret-board")
	caller := newTestUA(t, "caller")
	if _, err := floodCall(caller, addr, domain); err != nil { // warm up
		t.Fatal(err)
	}

	var srcs []*floodSource
	for x := 2; x <= 250; x++ {
		ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(x)})
		for range perIP {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)), net.UDPAddrFromAddrPort(nodeAP))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			fs := newFloodSource(c, floodMessages(c.LocalAddr().String(), addr, domain, x%3 == 0, 12))
			fs.n = uint32(len(srcs)) // sockets of one address start at different requests
			srcs = append(srcs, fs)
		}
	}
	dropsBefore, edgeBefore := udpDrops(nodeAP.Port()), n.edgeStats.DroppedSource.Load()

	// the flood
	var sent, sendErrs atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []*floodSource
			for i := g; i < len(srcs); i += senders {
				mine = append(mine, srcs[i])
			}
			per := float64(rate) / senders
			done := 0
			for {
				el := time.Since(start)
				if el >= duration {
					break
				}
				for want := int(el.Seconds() * per); done < want; done++ {
					if err := mine[done%len(mine)].send(); err != nil {
						sendErrs.Add(1)
					}
				}
				time.Sleep(200 * time.Microsecond)
			}
			sent.Add(int64(done))
		}()
	}

	// a timeline: how fast bans reach the store and the edge
	var timeline []string
	var twg sync.WaitGroup
	twg.Add(1)
	go func() {
		defer twg.Done()
		for at := 500 * time.Millisecond; at <= duration; at += 500 * time.Millisecond {
			time.Sleep(time.Until(start.Add(at)))
			timeline = append(timeline, fmt.Sprintf("%s: %d bans, %d dropped at the edge, %d kernel drops", at,
				len(n.Store().State().Bans(time.Now())), n.edgeStats.DroppedSource.Load()-edgeBefore, udpDrops(nodeAP.Port())-dropsBefore))
		}
	}()

	// the legitimate caller
	type result struct {
		at, setup time.Duration // start since the flood began, setup time
		err       error
	}
	results := make([]result, calls)
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		time.Sleep(200 * time.Millisecond)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := range calls {
			cwg.Add(1)
			go func() {
				defer cwg.Done()
				at := time.Since(start)
				d, err := floodCall(caller, addr, domain)
				results[i] = result{at, d, err}
			}()
			<-tick.C
		}
	}()

	// the room re-registers twice during the flood
	var regTimes []time.Duration
	for _, at := range []time.Duration{1500 * time.Millisecond, 3500 * time.Millisecond} {
		time.Sleep(time.Until(start.Add(at)))
		r0 := time.Now()
		room.register(n, "boardroom", "s3cret-board")
		regTimes = append(regTimes, time.Since(r0))
	}
	wg.Wait()
	floodTime := time.Since(start)
	cwg.Wait()
	twg.Wait()

	var ok []time.Duration
	var errs, slow []string
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, fmt.Sprintf("at %s: %v", r.at.Round(time.Millisecond), r.err))
			continue
		}
		ok = append(ok, r.setup)
		if r.setup > 50*time.Millisecond {
			slow = append(slow, fmt.Sprintf("%s at %s", r.setup.Round(time.Millisecond), r.at.Round(time.Millisecond)))
		}
	}
	slices.Sort(ok)
	bans := n.Store().State().Bans(time.Now())
	byRule := map[string]int{}
	for _, b := range bans {
		byRule[b.Rule]++
	}
	counts := n.Guard().Counts()
	nonzero := map[string]uint64{}
	for k, v := range counts {
		if v > 0 {
			nonzero[k] = v
		}
	}
	t.Logf("flood: %d requests in %s = %.0f requests/s from %d sockets on %d addresses (%d send errors)",
		sent.Load(), floodTime.Round(time.Millisecond), float64(sent.Load())/floodTime.Seconds(), len(srcs), len(srcs)/perIP, sendErrs.Load())
	t.Logf("bans: %d %v; guard refusals by rule: %v", len(bans), byRule, nonzero)
	t.Logf("dropped before parsing (banned sources): %d; kernel receive-buffer drops on the SIP socket: %d",
		n.edgeStats.DroppedSource.Load()-edgeBefore, udpDrops(nodeAP.Port())-dropsBefore)
	t.Logf("timeline:\n\t%s", strings.Join(timeline, "\n\t"))
	t.Logf("calls: %d/%d completed (%.1f%%); setup p50 %s p99 %s max %s; re-registrations took %v",
		len(ok), calls, 100*float64(len(ok))/calls, percentile(ok, 0.5), percentile(ok, 0.99), percentile(ok, 1), regTimes)
	if len(errs) > 0 {
		t.Logf("failed calls: %q", errs)
	}
	// what the B2BUA recorded of the calls (the warm-up call included)
	var recs []state.CallRecord
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if recs = n.Store().State().Records(state.RecordQuery{Limit: 1000}); len(recs) > calls && n.calls.Active() == 0 {
			break
		}
	}
	outcomes := map[string]int{}
	for _, r := range recs {
		outcomes[fmt.Sprintf("%d %s", r.Status, r.EndReason)]++
	}
	t.Logf("call records: %d %v; active calls: %d", len(recs), outcomes, n.calls.Active())
	for _, c := range n.calls.Calls() {
		t.Logf("still active: %+v (started %s after the flood began)", c, c.Started.Sub(start).Round(time.Millisecond))
	}
	if len(slow) > 0 {
		t.Logf("calls slower than 50ms (setup, started after the flood began): %v", slow)
	}

	// Under -race the node's code runs several times slower and shares two cores with the
	// generator: until the bans reach the edge it parses more than it can, the kernel drops
	// datagrams (legitimate ones too), calls wait for retransmissions, and a backlog processed
	// late can even spend the caller's rate-limit tokens. There the flood is lighter and only
	// what must hold under any load is checked: the room keeps its registration and the calls
	// complete. The rate, latency and no-refusal requirements are those of a normal build.
	race := raceEnabled()
	check := func(ok bool, format string, args ...any) {
		t.Helper()
		switch {
		case ok:
		case race:
			t.Logf("not checked under -race: "+format, args...)
		default:
			t.Errorf(format, args...)
		}
	}
	got := float64(sent.Load()) / floodTime.Seconds()
	check(got >= 20000, "the generator reached only %.0f requests/s, want >= 20000", got)
	if got < 0.8*float64(rate) {
		t.Errorf("the generator reached only %.0f requests/s of %d", got, rate)
	}
	if len(n.reg.Bindings("boardroom")) == 0 {
		t.Error("the room lost its registration")
	}
	if len(ok)*100 < calls*99 {
		t.Errorf("%d of %d calls completed, want >= 99%%", len(ok), calls)
	}
	// A call slower than 200ms waited for a retransmission of a datagram that the kernel dropped
	// from the node's full receive buffer: with the default SO_RCVBUF (about 200 KB, some 20ms
	// of this flood) a short stall of the node's UDP reader is enough.
	p99 := percentile(ok, 0.99)
	check(p99 < 200*time.Millisecond, "call setup p99 %s, want < 200ms (kernel receive-buffer drops on the node's SIP socket: %d)",
		p99, udpDrops(nodeAP.Port())-dropsBefore)
	evs := events(n, "127.0.0.1", "")
	check(len(evs) == 0, "the legitimate caller or the room was refused %d times: %s", len(evs), ruleSummary(evs))
	check(byRule[guard.RuleFlood] > 0 && byRule[guard.RuleEnumeration] > 0, "bans by rule %v, want flood and enumeration bans", byRule)
	if len(bans) == 0 {
		t.Error("the flood banned nobody")
	}
}

// TestNotSIPProbes: datagrams that are not SIP (an HTTP probe, SSDP, DNS, a TLS hello) are
// dropped before the SIP parser, each leaves a "malformed" event with its first bytes, and a
// stream of them bans the source like a flood of requests; STUN and CRLF keepalives pass
// quietly (the guard's unit test covers registered and allow-listed sources).
func TestNotSIPProbes(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	node := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(n.addr(t, "udp")))
	const prober = "127.0.0.31"
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(prober)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(d string) {
		t.Helper()
		if _, err := c.WriteToUDP([]byte(d), node); err != nil {
			t.Fatal(err)
		}
	}
	probes := []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\n\r\n",
		"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
	}
	for _, p := range probes {
		send(p)
	}
	send("\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl") // STUN binding request
	send("\r\n\r\n")
	waitFor(t, func() bool { return len(events(n, prober, guard.RuleMalformed)) == len(probes) })
	evs := events(n, prober, guard.RuleMalformed)
	if e := evs[len(evs)-1]; e.Action != guard.Drop || e.Transport != "UDP" || !strings.Contains(e.Reason, `"GET / HTTP/1.1\r\n`) {
		t.Fatalf("oldest event %+v", e)
	}
	if got := ruleSummary(events(n, prober, "")); got != "map[malformed/drop:4]" {
		t.Fatalf("events %s: STUN or the keepalive was counted", got)
	}
	// The STUN request is read after the last probe's event is recorded, and on a busy machine
	// the test sees that event first: wait for the counter rather than read it once.
	s := &n.edgeStats
	waitFor(t, func() bool { return s.DroppedNotSIP.Load() >= 4 && s.DroppedSTUN.Load() >= 1 })
	if s.DroppedSTUN.Load() != 1 {
		t.Fatalf("edge counters: not SIP %d, STUN %d", s.DroppedNotSIP.Load(), s.DroppedSTUN.Load())
	}
	// Keep probing: the rate limit runs out and the source is banned; the edge then drops it unseen.
	for i := 0; i < 200; i++ {
		send(probes[0])
		if _, ok := banOf(n, prober); ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, func() bool { _, ok := banOf(n, prober); return ok })
	if b, _ := banOf(n, prober); b.Rule != guard.RuleFlood {
		t.Fatalf("ban %+v", b)
	}
	if inv := receivedInvites(room); len(inv) != 0 {
		t.Fatalf("the room got %d INVITEs", len(inv))
	}
}

// TestDatagramMeterBoundsReflection: a source that sends the same OPTIONS 4,000 times (a
// spoofed victim's address would get every answer: the transaction layer answers each copy
// of a retransmission without the guard seeing it) gets at most the meter's burst answered,
// is banned for flooding, and the drops show in the edge's counters. A registered room's
// address is exempt.
func TestDatagramMeterBoundsReflection(t *testing.T) {
	cfg := callConfig(t)
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	node := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(n.addr(t, "udp")))
	const src = "127.0.0.41"
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(8 << 20)
	msg := []byte(rawRequest("OPTIONS", "boardroom", "probe", "test", n.addr(t, "udp"), c.LocalAddr().String()))
	const copies = 4000
	for i := range copies {
		if _, err := c.WriteToUDP(msg, node); err != nil {
			t.Fatal(err)
		}
		if i%200 == 199 {
			time.Sleep(time.Millisecond) // let the node's reader keep up: kernel drops are not the point
		}
	}
	answers := 0
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			break
		}
		answers++
	}
	burst := cfg.Guard.DatagramBurst
	t.Logf("%d copies sent, %d answered; edge: %d dropped for rate, %d for the ban", copies, answers,
		n.edgeStats.DroppedRate.Load(), n.edgeStats.DroppedSource.Load())
	// the burst, plus what refills while a loaded machine reads the copies (812 seen here)
	if answers == 0 || answers > 2*burst {
		t.Fatalf("%d of %d copies answered, want 1..%d (the meter's burst plus what refills while they arrive)", answers, copies, 2*burst)
	}
	if n.edgeStats.DroppedRate.Load() == 0 {
		t.Fatal("no datagram counted as dropped for rate")
	}
	waitFor(t, func() bool { _, ok := banOf(n, src); return ok })
	if b, _ := banOf(n, src); b.Rule != guard.RuleFlood {
		t.Fatalf("ban %+v, want a flood ban", b)
	}

	// the room's address is exempt (it is also one of the node's own here)
	bs := n.reg.Bindings("boardroom")
	if len(bs) == 0 {
		t.Fatal("room not registered")
	}
	flow := netip.MustParseAddrPort(bs[0].Source)
	for i := range 2 * burst {
		if !n.guard.Datagram(flow) {
			t.Fatalf("the room's flow %s: datagram %d dropped", flow, i)
		}
	}
	// an address that is not ours passes too once a room registered from it, on any port
	const siteIP = "127.0.0.42"
	b := state.Binding{Room: "room2", Contact: "sip:room2@" + siteIP, Source: siteIP + ":5060", Transport: "UDP",
		Node: n.cfg.Node.ID, Expires: time.Now().Add(time.Hour)}
	if err := n.Store().Propose(context.Background(), state.PutBinding(b)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 * burst {
		if !n.guard.Datagram(netip.AddrPortFrom(netip.MustParseAddr(siteIP), 40000)) {
			t.Fatalf("the site %s: datagram %d dropped", siteIP, i)
		}
	}
	passed := 0
	for range 2 * burst {
		if n.guard.Datagram(netip.MustParseAddrPort(src + ":5060")) {
			passed++
		}
	}
	if passed > burst+burst/2 {
		t.Fatalf("the flooder %s passed the meter %d times of %d", src, passed, 2*burst)
	}
}

// TestSIPpSiteAvalanche: the 300 rooms of one site (SIPp, one socket per room on one address,
// as behind a NAT) register together at 300/s, digest and all; then an outage makes the
// registrar drop every binding, and the rooms come back together at 1,000/s from new ports.
// Both times every room registers and the site is not banned; the second time not one of its
// requests is refused (the node remembers the site).
func TestSIPpSiteAvalanche(t *testing.T) {
	testpeer.Require(t, "sipp")
	const rooms = 300
	cfg := callConfig(t)
	inf := "SEQUENTIAL\n"
	for i := range rooms {
		name, pass := fmt.Sprintf("site-room%d", i), fmt.Sprintf("pw-%d-secret", i)
		cfg.Rooms = append(cfg.Rooms, config.Room{Name: name, Password: pass, Inbound: "open"})
		inf += name + ";[authentication username=" + name + " password=" + pass + "]\n"
	}
	infFile := filepath.Join(t.TempDir(), "rooms.csv")
	if err := os.WriteFile(infFile, []byte(inf), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, cfg)
	const site = "127.0.0.61"
	registerAll := func(rate int) time.Duration {
		t.Helper()
		start := time.Now()
		startSIPp(t, n.addr(t, "udp"), "-sf", "register_site.xml", "-inf", infFile, "-t", "un", "-max_socket", "1000",
			"-i", site, "-r", strconv.Itoa(rate), "-m", strconv.Itoa(rooms), "-l", strconv.Itoa(rooms),
			"-timeout", "45s", "-timeout_error").wait(t)
		took := time.Since(start)
		waitFor(t, func() bool { return n.Store().State().RegisteredBehind(netip.MustParseAddr(site)) == rooms })
		if b, banned := banOf(n, site); banned {
			t.Fatalf("the site was banned: %+v", b)
		}
		return took
	}
	first := registerAll(300)
	refusedFirst := len(events(n, site, ""))
	t.Logf("first boot: %d rooms registered in %s, %d requests refused on the way (%s)", rooms, first.Round(time.Millisecond), refusedFirst, ruleSummary(events(n, site, "")))

	// the outage: the registrar drops the bindings (missed keepalives)
	if err := n.Store().Propose(context.Background(), state.DeleteNodeBindings(n.cfg.Node.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return n.Store().State().RegisteredBehind(netip.MustParseAddr(site)) == 0 })
	again := registerAll(1000)
	refused := len(events(n, site, "")) - refusedFirst
	t.Logf("after the outage: %d rooms registered in %s, %d requests refused", rooms, again.Round(time.Millisecond), refused)
	if refused != 0 {
		t.Fatalf("the known site was refused %d times coming back: %s", refused, ruleSummary(events(n, site, "")))
	}
}

// TestStreamMeterClosesFlood: a TCP peer that pours messages down one connection (in-dialog
// junk that the guard's request checks never see) has its connection closed once it passes
// its source's rate; the close is counted.
func TestStreamMeterClosesFlood(t *testing.T) {
	n := startNode(t, callConfig(t))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.44")}}
	c, err := d.Dial("tcp", n.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bye := "BYE sip:boardroom@" + n.addr(t, "tcp") + " SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.44:5060;branch=z9hG4bK-%d\r\n" +
		"From: <sip:x@127.0.0.44>;tag=1\r\nTo: <sip:boardroom@video.test>;tag=2\r\nCall-ID: junk-%d\r\nCSeq: 2 BYE\r\n" +
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	var sent int
	for sent = range 20000 { // far past burst + rate x the time a loaded machine takes to read them
		if _, err := fmt.Fprintf(c, bye, sent, sent); err != nil {
			break // closed by the node
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && isTimeoutErr(err) {
		t.Fatal("the connection over its rate is still open")
	}
	waitFor(t, func() bool { return n.edgeStats.ClosedRate.Load() == 1 })
	t.Logf("connection closed after %d messages sent", sent)
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

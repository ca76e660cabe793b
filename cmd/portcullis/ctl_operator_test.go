package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/relay"
)

// TestCtlBansRemoveIsLift: `bans remove` lifts a ban, as `bans lift` does.
func TestCtlBansRemoveIsLift(t *testing.T) {
	n := startNode(t)
	n.bootstrap(t)
	runOK(t, "bans", "add", "203.0.113.0/24", "--reason", "scanning")
	wantOut(t, runOK(t, "bans", "remove", "203.0.113.0/24"), "lifted")
	if _, ok := n.store.State().Ban(mustPrefix(t, "203.0.113.0/24")); ok {
		t.Fatal("ban still in the state after bans remove")
	}
}

// TestCtlRecordsNewestFirst: `records --limit 2` shows the two newest records, newest first;
// the cursor pages on toward older ones, and --oldest keeps the old order.
func TestCtlRecordsNewestFirst(t *testing.T) {
	n := startNode(t)
	n.bootstrap(t)
	now := time.Now()
	for i := range 5 {
		propose(t, n, state.EndCall(state.CallRecord{Call: state.Call{ID: "r" + string(rune('a'+i)), Room: "room-" + string(rune('a'+i))},
			Ended: now.Add(time.Duration(i) * time.Minute), EndReason: "bye", Status: 200}))
	}
	out, errOut, code := runT(runCtl, "records", "--limit", "2")
	if code != 0 {
		t.Fatalf("records: %d %s", code, errOut)
	}
	if !strings.Contains(out, "room-e") || !strings.Contains(out, "room-d") || strings.Contains(out, "room-a") ||
		strings.Index(out, "room-e") > strings.Index(out, "room-d") {
		t.Fatalf("want room-e then room-d (newest first):\n%s", out)
	}
	cur := strings.TrimSpace(errOut[strings.Index(errOut, "--cursor")+len("--cursor"):])
	cur = strings.Fields(cur)[0]
	out = runOK(t, "records", "--limit", "2", "--cursor", cur)
	if !strings.Contains(out, "room-c") || !strings.Contains(out, "room-b") || strings.Contains(out, "room-e") {
		t.Fatalf("second page, want room-c and room-b:\n%s", out)
	}
	out = runOK(t, "records", "--limit", "2", "--oldest")
	if !strings.Contains(out, "room-a") || !strings.Contains(out, "room-b") || strings.Contains(out, "room-e") {
		t.Fatalf("--oldest, want room-a and room-b:\n%s", out)
	}
}

// TestCtlCallsShowMediaTable: `calls show` prints a call's media as a table of streams
// (packets, loss, jitter, latched addresses), not raw JSON.
func TestCtlCallsShowMediaTable(t *testing.T) {
	n := startNode(t)
	n.bootstrap(t)
	propose(t, n, state.PutCall(state.Call{ID: "call-1", Room: "boardroom", Direction: state.Inbound,
		From: "sip:alice@partner.example", Node: "edge1", State: state.CallAnswered, Started: time.Now()}))
	n.calls.media = map[string]any{"call-1": []media.StreamStats{
		{Index: 0, Media: "audio", Proto: "RTP/AVP", Stats: relay.Stats{
			AToB:     relay.DirectionStats{Packets: 2500, Bytes: 430000, Lost: 3, JitterMs: 4.5},
			BToA:     relay.DirectionStats{Packets: 2490, Bytes: 428000, JitterMs: 3.1},
			LatchedA: mustAddrPort(t, "192.0.2.10:20000"), LatchedB: mustAddrPort(t, "198.51.100.5:30000"),
			PortA: 20000, PortB: 20002}},
		{Index: 1, Media: "video", Proto: "RTP/AVP", Content: "slides", Stats: relay.Stats{
			AToB: relay.DirectionStats{Packets: 9000, Bytes: 9000000}, PortA: 20004, PortB: 20006}},
	}}
	out := runOK(t, "calls", "show", "call-1")
	if strings.Contains(out, "{") || strings.Contains(out, `"a_to_b"`) {
		t.Fatalf("media printed as JSON:\n%s", out)
	}
	wantOut(t, out, "STREAM", "DIRECTION", "PACKETS", "LOST", "JITTER", "0 audio", "a->b", "2500", "4.5 ms",
		"192.0.2.10:20000", "1 video (slides)", "9000", "not latched")
	t.Logf("calls show:\n%s", out)
}

// TestTokenHelpAndDataDir: `portcullis token --help` shows the token command's usage (not ctl's),
// and `token create --config FILE` finds the node's data dir in the file.
func TestTokenHelpAndDataDir(t *testing.T) {
	n := startNode(t)
	for _, args := range [][]string{{"--help"}, {"create", "--help"}, {"-h"}} {
		out, errOut, code := runT(runToken, args...)
		if code != 0 || strings.Contains(out+errOut, "portcullis ctl") || !strings.Contains(out+errOut, "portcullis token create") ||
			!strings.Contains(out+errOut, "--config") {
			t.Errorf("token %v: exit %d\nstdout %s\nstderr %s", args, code, out, errOut)
		}
	}
	cfg := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(cfg, []byte("node:\n  data_dir: "+n.dataDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runT(runToken, "create", "--scope", "read", "--name", "dashboard", "--config", cfg)
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "pct_") {
		t.Fatalf("token create --config: %d %s %s", code, out, errOut)
	}
	// The wrong data dir: the error says which socket it tried and how to name the right one.
	_, errOut, code = runT(runToken, "create", "--scope", "read", "--name", "x", "--data-dir", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "--config FILE") || !strings.Contains(errOut, "--data-dir DIR") {
		t.Fatalf("wrong data dir: %d %s", code, errOut)
	}
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

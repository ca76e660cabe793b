package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/sbc"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// TestCtlDrivesRunningNode runs `portcullis ctl` against a whole node (SIP, B2BUA, media, Raft,
// admin API): it creates a room, lists a SIPp room's registration, hangs up a real call between
// SIPp peers (both legs get BYE, the record says why), and adds and lifts a ban.
func TestCtlDrivesRunningNode(t *testing.T) {
	sipp := testpeer.Require(t, "sipp")
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	cfg := config.Default()
	cfg.Node.ID, cfg.Node.DataDir = "ctl1", t.TempDir()
	cfg.SIP.Domain = "video.test"
	cfg.SIP.Listen = []config.Listen{{Transport: "udp", Addr: lo}}
	cfg.Media.Bind = netip.MustParseAddr("127.0.0.1")
	cfg.TURN.Listen = nil
	cfg.Admin.Listen, cfg.Admin.Token = "127.0.0.1:0", "ctl-test-token-0123456789abcdef"
	cfg.Cluster.Bind = "127.0.0.1:0"
	cfg.Registrar.Algorithms = []string{"MD5"} // SIPp knows only MD5
	cfg.Rooms = []config.Room{{Name: "boardroom", Password: "s3cret-board", Inbound: "open"}}
	n := startSBC(t, cfg)
	ctx := t.Context() // ends the SIPp peers with the test
	sipAddr := n.Bound()[0].Addr.String()

	wantOut(t, runOK(t, "rooms", "create", "lobby", "--password", "lobby-password"), "lobby")
	if _, ok := n.Store().State().Room("lobby"); !ok {
		t.Fatal("room created by ctl is not in the node's state")
	}

	// a SIPp room registers and answers; a SIPp caller holds a call until ctl hangs it up
	scen, _ := filepath.Abs("../../sbc/testdata/sipp")
	port := strconv.Itoa(testpeer.FreeUDPPort(t))
	sippCmd := func(args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, sipp, append(args, "-nostdin", "-i", "127.0.0.1", "-timeout", "30s")...)
		c.Dir = t.TempDir()
		return c
	}
	if out, err := sippCmd(sipAddr, "-sf", filepath.Join(scen, "register.xml"), "-s", "boardroom", "-au", "boardroom",
		"-ap", "s3cret-board", "-p", port, "-m", "1").CombinedOutput(); err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	wantOut(t, runOK(t, "registrations"), "boardroom", "127.0.0.1:"+port)
	wantOut(t, runOK(t, "sites"), "PREFIX", "127.0.0.1/32")
	uas := sippCmd("-sf", filepath.Join(scen, "uas.xml"), "-p", port, "-m", "1", "-aa")
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	uasDone := make(chan error, 1)
	go func() { uasDone <- uas.Wait() }()
	time.Sleep(200 * time.Millisecond)
	caller := sippCmd(sipAddr, "-sf", filepath.Join(scen, "uac.xml"), "-s", "boardroom",
		"-p", strconv.Itoa(testpeer.FreeUDPPort(t)), "-m", "1", "-d", "20000")
	if err := caller.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = caller.Process.Kill(); _ = caller.Wait() }()
	var id string
	for deadline := time.Now().Add(5 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var calls struct{ Items []state.Call }
		if err := json.Unmarshal([]byte(runOK(t, "-o", "json", "calls", "list")), &calls); err != nil {
			t.Fatal(err)
		}
		for _, c := range calls.Items {
			if c.State == state.CallAnswered {
				id = c.ID
			}
		}
	}
	if id == "" {
		t.Fatal("no answered call listed by ctl")
	}
	wantOut(t, runOK(t, "calls", "hangup", id), id)
	select {
	case err := <-uasDone: // the room got BYE and answered it: its scenario is complete
		if err != nil {
			t.Fatalf("room (SIPp UAS) after the hang-up: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the room got no BYE after ctl calls hangup")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recs := n.Store().State().Records(state.RecordQuery{})
		if len(recs) == 1 && recs[0].EndReason == "ended by admin" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records: %+v", recs)
		}
	}
	wantOut(t, runOK(t, "records"), "ended by admin")

	wantOut(t, runOK(t, "bans", "add", "203.0.113.9/32", "--reason", "seen scanning"), "banned 203.0.113.9/32")
	if len(n.Store().State().Bans(time.Now())) != 1 {
		t.Fatal("ban not in the node's state")
	}
	wantOut(t, runOK(t, "bans", "lift", "203.0.113.9/32"), "lifted")
	if len(n.Store().State().Bans(time.Now())) != 0 {
		t.Fatal("ban not lifted")
	}
}

// startSBC starts a whole node with cfg for the test and points the ctl commands at its admin API
// (PORTCULLIS_API, PORTCULLIS_TOKEN).
func startSBC(t *testing.T, cfg config.Config) *sbc.Node {
	t.Helper()
	n, err := sbc.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); n.Close() })
	t.Setenv("PORTCULLIS_API", "http://"+n.AdminAddr())
	t.Setenv("PORTCULLIS_TOKEN", cfg.Admin.Token)
	return n
}

package sbc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// callConfig is a node for call tests: two rooms, MD5 digest (SIPp knows only MD5), short ring
// timeout.
func callConfig(t *testing.T) config.Config {
	cfg := testConfig(t)
	cfg.Registrar.Algorithms = []string{"MD5"}
	cfg.Calls.RingTimeout = config.Duration(3 * time.Second)
	cfg.Rooms = append(cfg.Rooms, config.Room{Name: "room2", Password: "room2-pass", Inbound: "open"})
	return cfg
}

// sipp runs one SIPp process in dir; wait returns its error with the tail of its logs.
type sipp struct {
	cmd  *exec.Cmd
	dir  string
	done chan error
}

func startSIPp(t *testing.T, args ...string) *sipp {
	t.Helper()
	bin := testpeer.Require(t, "sipp")
	dir := t.TempDir()
	scen, _ := filepath.Abs("testdata/sipp")
	for i, a := range args {
		if strings.HasSuffix(a, ".xml") {
			args[i] = filepath.Join(scen, a)
		}
	}
	args = append(args, "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "err.log"),
		"-trace_msg", "-message_file", filepath.Join(dir, "msg.log"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sipp{cmd: cmd, dir: dir, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		if err != nil {
			e, _ := os.ReadFile(filepath.Join(dir, "err.log"))
			m, _ := os.ReadFile(filepath.Join(dir, "msg.log"))
			err = fmt.Errorf("sipp %s: %w\n%s\n--- errors\n%s\n--- messages (tail)\n%s", args[0], err, tailStr(out.String(), 1500), e, tailStr(string(m), 6000))
		}
		s.done <- err
	}()
	return s
}

func (s *sipp) wait(t *testing.T) {
	t.Helper()
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
}

// messages returns what SIPp logged of the messages it sent and received.
func (s *sipp) messages() string {
	m, _ := os.ReadFile(filepath.Join(s.dir, "msg.log"))
	return string(m)
}

func tailStr(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// sippRoom registers a SIPp room on a fresh port and starts its UAS scenario there.
func sippRoom(t *testing.T, n *Node, room, pass, scenario string, calls int) *sipp {
	t.Helper()
	port := strconv.Itoa(testpeer.FreeUDPPort(t))
	reg := startSIPp(t, n.addr(t, "udp"), "-sf", "register.xml", "-s", room, "-au", room, "-ap", pass,
		"-i", "127.0.0.1", "-p", port, "-m", "1", "-timeout", "10s", "-timeout_error")
	reg.wait(t)
	uas := startSIPp(t, "-sf", scenario, "-i", "127.0.0.1", "-p", port, "-m", strconv.Itoa(calls), "-aa",
		"-timeout", "40s", "-timeout_error")
	time.Sleep(200 * time.Millisecond) // let SIPp bind
	return uas
}

// sippCall runs a caller scenario against the node and waits for it.
func sippCall(t *testing.T, n *Node, room, scenario string, calls int, extra ...string) *sipp {
	t.Helper()
	args := append([]string{n.addr(t, "udp"), "-sf", scenario, "-s", room, "-i", "127.0.0.1", "-p", strconv.Itoa(testpeer.FreeUDPPort(t)),
		"-m", strconv.Itoa(calls), "-timeout", "30s", "-timeout_error", "-d", "500"}, extra...)
	c := startSIPp(t, args...)
	c.wait(t)
	return c
}

// records waits until the node has n call records and returns them.
func records(t *testing.T, n *Node, want int) []state.CallRecord {
	t.Helper()
	var recs []state.CallRecord
	waitFor(t, func() bool {
		recs = n.Store().State().Records(state.RecordQuery{Limit: 1000})
		return len(recs) >= want && n.calls.Active() == 0
	})
	return recs
}

func TestSIPpCalls(t *testing.T) {
	testpeer.Require(t, "sipp")
	tests := []struct {
		name, uas, uac string
		wantStatus     int
		wantReason     string
	}{
		{"basic call, caller hangs up", "uas.xml", "uac.xml", 200, "caller hung up"},
		{"callee hangs up", "uas_bye.xml", "uac_wait_bye.xml", 200, "callee hung up"},
		{"caller cancels before answer", "uas_ring.xml", "uac_cancel.xml", 487, "caller cancelled"},
		{"CANCEL/200 race", "uas_race.xml", "uac_cancel.xml", 487, "caller cancelled"},
		{"re-INVITE hold and resume", "uas_hold.xml", "uac_hold.xml", 200, "caller hung up"},
		{"busy", "uas_busy.xml", "uac_486.xml", 486, "busy"},
		{"no answer", "uas_ring.xml", "uac_408.xml", 408, "no answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, callConfig(t))
			uas := sippRoom(t, n, "boardroom", "s3cret-board", tt.uas, 1)
			sippCall(t, n, "boardroom", tt.uac, 1)
			uas.wait(t)
			recs := records(t, n, 1)
			r := recs[0]
			if r.Status != tt.wantStatus || r.EndReason != tt.wantReason || r.Room != "boardroom" || r.Direction != state.Inbound {
				t.Fatalf("record: status %d reason %q room %q dir %s; want %d %q", r.Status, r.EndReason, r.Room, r.Direction, tt.wantStatus, tt.wantReason)
			}
			if tt.wantStatus == 200 && (r.Answered.IsZero() || r.Duration <= 0) {
				t.Fatalf("answered call without answer time or duration: %+v", r)
			}
		})
	}
}

// TestSIPpForking registers two contacts for one room: one rings, the other answers; the
// ringing one is cancelled.
func TestSIPpForking(t *testing.T) {
	testpeer.Require(t, "sipp")
	cfg := callConfig(t)
	n := startNode(t, cfg)
	ringer := sippRoom(t, n, "boardroom", "s3cret-board", "uas_ring.xml", 1)
	answerer := sippRoom(t, n, "boardroom", "s3cret-board", "uas.xml", 1)
	if got := len(n.reg.Bindings("boardroom")); got != 2 {
		t.Fatalf("bindings: %d, want 2", got)
	}
	sippCall(t, n, "boardroom", "uac.xml", 1)
	answerer.wait(t)
	ringer.wait(t)
	if r := records(t, n, 1)[0]; r.Status != 200 {
		t.Fatalf("record %+v", r)
	}
}

// TestSIPpOutbound: a room dials out (SIPp, answering the 407) to sip:meeting@far.test, which
// the node resolves by NAPTR/SRV to a SIPp far end; the call connects and the room hangs up.
func TestSIPpOutbound(t *testing.T) {
	testpeer.Require(t, "sipp")
	farPort := testpeer.FreeUDPPort(t)
	cfg := callConfig(t)
	cfg.Calls.DNS = dnsServer(t, []*dns.SRV{{Priority: 10, Weight: 10, Port: uint16(farPort), Target: "far1.far.test."}})
	n := startNode(t, cfg)
	far := startSIPp(t, "-sf", "uas.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(farPort), "-m", "1", "-timeout", "30s", "-timeout_error")
	time.Sleep(200 * time.Millisecond)
	sippCall(t, n, "meeting", "uac_out.xml", 1, "-au", "boardroom", "-ap", "s3cret-board",
		"-auth_uri", "meeting@far.test", // SIPp digests sip:remote_ip:port unless told
		"-key", "room", "boardroom", "-key", "domain", cfg.SIP.Domain, "-key", "target", "far.test")
	far.wait(t)
	r := records(t, n, 1)[0]
	if r.Direction != state.Outbound || r.Status != 200 || r.EndReason != "caller hung up" || r.Room != "boardroom" {
		t.Fatalf("record %+v", r)
	}
	if strings.Contains(far.messages(), "s3cret") || strings.Contains(far.messages(), "Proxy-Authorization") {
		t.Fatal("the room's credentials reached the far end")
	}
}

// receivedSize returns the size of the first message SIPp logged as received whose first line
// starts with start (0 when none).
func receivedSize(log, start string) int {
	re := regexp.MustCompile(`message received \[(\d+)\] bytes :\s*\n\s*` + regexp.QuoteMeta(start))
	m := re.FindStringSubmatch(log)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestSIPpLargeUDPMessages: a room system registered over UDP (its only flow, as behind NAT)
// is called with a room system's INVITE (audio, main video, content video, BFCP, FECC; over
// 3,000 bytes) and answers with a 200 of similar size. Both travel over UDP through the node
// (IP fragmentation carries them, as it does for every endpoint and SBC): both legs connect.
func TestSIPpLargeUDPMessages(t *testing.T) {
	testpeer.Require(t, "sipp")
	n := startNode(t, callConfig(t))
	uas := sippRoom(t, n, "boardroom", "s3cret-board", "uas_big.xml", 1)
	uac := sippCall(t, n, "boardroom", "uac_big.xml", 1)
	uas.wait(t)
	r := records(t, n, 1)[0]
	if r.Status != 200 || r.EndReason != "caller hung up" || r.Duration <= 0 {
		t.Fatalf("record: %+v", r)
	}
	invite, ok := receivedSize(uas.messages(), "INVITE sip:"), receivedSize(uac.messages(), "SIP/2.0 200 OK")
	t.Logf("the room received an INVITE of %d bytes, the caller a 200 of %d bytes", invite, ok)
	if invite < 3000 || ok < 3000 {
		t.Fatalf("the messages relayed over UDP were not as large as meant: INVITE %d bytes, 200 %d bytes", invite, ok)
	}
}

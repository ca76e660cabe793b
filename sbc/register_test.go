package sbc

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// registerRoom registers room "boardroom" at the node over transport with a sipgo UA acting as
// the room system, answering the digest challenge, and returns the final response.
func registerRoom(t *testing.T, n *Node, transport, password string) *sip.Response {
	t.Helper()
	res, _, _ := registerRoomClient(t, n, transport, password)
	return res
}

// registerRoomClient is registerRoom that also returns the client and the authenticated request.
func registerRoomClient(t *testing.T, n *Node, transport, password string) (*sip.Response, *sipgo.Client, *sip.Request) {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("RoomSystem-Test"), sipgo.WithUserAgenTLSConfig(&tls.Config{InsecureSkipVerify: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	addr := n.addr(t, transport)
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: n.cfg.SIP.Domain})
	req.SetDestination(addr)
	req.SetTransport(map[string]string{"udp": "UDP", "tcp": "TCP", "tls": "TLS"}[transport])
	to := &sip.ToHeader{Address: sip.Uri{User: "boardroom", Host: n.cfg.SIP.Domain}}
	req.AppendHeader(to)
	from := &sip.FromHeader{Address: to.Address, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{User: "boardroom", Host: "127.0.0.1", Port: 5999}})
	req.AppendHeader(sip.NewHeader("Expires", "300"))
	// both round trips; generous for a loaded machine (the binding is a Raft write), so that
	// only a lost or refused REGISTER fails here
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil {
		t.Fatalf("REGISTER over %s: %v", transport, err)
	}
	if res.StatusCode != 401 {
		t.Fatalf("first REGISTER: want 401 challenge, got %d", res.StatusCode)
	}
	res, err = cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "boardroom", Password: password})
	if err != nil {
		t.Fatalf("authenticated REGISTER over %s: %v", transport, err)
	}
	return res, cl, req
}

// TestReplayedNonceCountRejected resends an accepted REGISTER with the same Authorization
// (same nonce and nc): the node must refuse it and keep the binding as it was.
func TestReplayedNonceCountRejected(t *testing.T) {
	n := startNode(t, testConfig(t))
	res, cl, req := registerRoomClient(t, n, "udp", "s3cret-board")
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER: %d", res.StatusCode)
	}
	before := n.reg.Bindings("boardroom")
	replay := req.Clone()
	replay.RemoveHeader("Via")
	replay.CSeq().SeqNo++
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := cl.Do(ctx, replay, sipgo.ClientRequestAddVia)
	if err != nil {
		t.Fatal(err)
	}
	if got.StatusCode != 403 && got.StatusCode != 401 {
		t.Fatalf("replayed credentials answered %d", got.StatusCode)
	}
	after := n.reg.Bindings("boardroom")
	if len(after) != 1 || !after[0].Expires.Equal(before[0].Expires) {
		t.Fatalf("replay changed the binding: %+v -> %+v", before, after)
	}
}

func TestRegisterOverEveryTransport(t *testing.T) {
	cfg := testConfig(t)
	cfg.SIP.TLS.Cert, cfg.SIP.TLS.Key = selfSigned(t, t.TempDir())
	cfg.SIP.Listen = append(cfg.SIP.Listen, config.Listen{Transport: "tls", Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	n := startNode(t, cfg)
	for _, tr := range []string{"udp", "tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			res := registerRoom(t, n, tr, "s3cret-board")
			if res.StatusCode != 200 {
				t.Fatalf("REGISTER: %d %s", res.StatusCode, res.Reason)
			}
			bs := n.reg.Bindings("boardroom")
			found := false
			for _, b := range bs {
				found = found || b.Transport == map[string]string{"udp": "UDP", "tcp": "TCP", "tls": "TLS"}[tr]
			}
			if !found {
				t.Fatalf("no %s binding in %+v", tr, bs)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		before := len(n.reg.Bindings("boardroom"))
		res := registerRoom(t, n, "udp", "guess")
		if res.StatusCode != 403 && res.StatusCode != 401 {
			t.Fatalf("wrong password: %d", res.StatusCode)
		}
		if len(n.reg.Bindings("boardroom")) != before {
			t.Fatal("a wrong password changed the bindings")
		}
	})
}

// TestBaresipRegisters runs baresip as a room system registering to the node with the shipped
// digest defaults (baresip 1.0 gave up on any 401 that offered SHA-256).
func TestBaresipRegisters(t *testing.T) {
	testpeer.Require(t, "baresip")
	cfg := testConfig(t)
	if def := config.Default().Registrar.Algorithms; !slices.Equal(cfg.Registrar.Algorithms, def) {
		t.Fatalf("test config algorithms %v, shipped %v", cfg.Registrar.Algorithms, def)
	}
	n := startNode(t, cfg)
	out := runBaresipRoom(t, n, "s3cret-board")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if bs := n.reg.Bindings("boardroom"); len(bs) > 0 {
			t.Logf("baresip registered: contact %s from %s", bs[0].Contact, bs[0].Source)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("baresip did not register; its output:\n%s", out.String())
}

// runBaresipRoom starts baresip registering as boardroom with password pass, and returns its
// output.
func runBaresipRoom(t *testing.T, n *Node, pass string) *lockedBuffer {
	t.Helper()
	bin := testpeer.Require(t, "baresip")
	dir := t.TempDir()
	addr := n.addr(t, "udp")
	os.WriteFile(filepath.Join(dir, "config"), []byte(fmt.Sprintf("sip_listen\t127.0.0.1:%d\n"+
		"module_path\t/usr/lib/baresip/modules\nmodule\tg711.so\nmodule_app\taccount.so\nmodule_app\tmenu.so\n"+
		"audio_player\tnil\naudio_source\tnil\n", testpeer.FreePort(t))), 0o600)
	os.WriteFile(filepath.Join(dir, "accounts"), []byte(fmt.Sprintf(
		"<sip:boardroom@video.test>;auth_pass=%s;outbound=\"sip:%s;transport=udp\";regint=300\n", pass, addr)), 0o600)
	cmd := exec.Command(bin, "-f", dir)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return out
}

// registrationEvent waits for a registration-failed event of boardroom whose reason starts with
// reason. The deadline is generous: under a loaded CI machine baresip may take many seconds to
// load its modules and send its first REGISTER (out is its output, shown on failure).
func registrationEvent(t *testing.T, n *Node, reason string, out *lockedBuffer) guard.Event {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range n.guard.Recent(guard.EventFilter{Rule: guard.RuleRegistration, Room: "boardroom"}, 0) {
			if strings.HasPrefix(e.Reason, reason) {
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no registration-failed event with reason %q; events: %+v; baresip said:\n%s", reason, n.guard.Recent(guard.EventFilter{}, 20), out.String())
	return guard.Event{}
}

// TestFailedRegistrationIsVisible: a room whose registration never completes shows up in the
// guard's events (ctl events) with the reason, and in portcullis_registration_failures_total:
// baresip 1.0 offered SHA-256 (the old default) answers no challenge; a wrong password is
// refused.
func TestFailedRegistrationIsVisible(t *testing.T) {
	testpeer.Require(t, "baresip")
	cfg := testConfig(t)
	cfg.Registrar.Algorithms = []string{"SHA-256", "MD5"}
	cfg.Registrar.ChallengeTimeout = config.Duration(2 * time.Second)
	cfg.Admin.Token = "test-admin-token-0123456789abcdef"
	n := startNode(t, cfg)
	out := runBaresipRoom(t, n, "s3cret-board")
	e := registrationEvent(t, n, "challenge_unanswered", out)
	if e.Code != 401 || e.Method != "REGISTER" || e.Room != "boardroom" || !strings.Contains(e.Reason, "SHA-256, MD5") {
		t.Fatalf("event %+v", e)
	}
	if len(n.reg.Bindings("boardroom")) != 0 {
		t.Fatalf("baresip registered after all; its output:\n%s", out.String())
	}
	said := ""
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "Register:") {
			said = l
		}
	}
	t.Logf("event: %s %s code %d: %s (baresip: %q)", e.Rule, e.Source, e.Code, e.Reason, said)

	if res := registerRoom(t, n, "udp", "wrong-password"); res.StatusCode != 403 {
		t.Fatalf("wrong password: %d", res.StatusCode)
	}
	if e := registrationEvent(t, n, "bad_credentials", out); e.Code != 403 {
		t.Fatalf("event %+v", e)
	}
	_, metrics := adminGet(t, n, cfg.Admin.Token, "/metrics")
	for _, want := range []string{"challenge_unanswered", "bad_credentials"} {
		if v := metric(metrics, `portcullis_registration_failures_total{reason="`+want+`"}`); v == "" || v == "0" {
			t.Fatalf("portcullis_registration_failures_total{reason=%q} = %q", want, v)
		}
	}
	if _, body := adminGet(t, n, cfg.Admin.Token, "/api/v1/events?rule=registration-failed"); !strings.Contains(body, "challenge_unanswered") {
		t.Fatalf("admin API events: %s", body)
	}
}

// TestExpiredNonceIsStale answers a challenge after the nonce expired: the node must refuse the
// (otherwise correct) credentials with a fresh challenge carrying stale=true, and no binding.
func TestExpiredNonceIsStale(t *testing.T) {
	var offset atomic.Int64
	cfg := testConfig(t)
	n, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n.clock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); n.Close() })
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ua, _ := sipgo.NewUA()
	t.Cleanup(func() { ua.Close() })
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: n.cfg.SIP.Domain})
	req.SetDestination(n.addr(t, "udp"))
	to := &sip.ToHeader{Address: sip.Uri{User: "boardroom", Host: n.cfg.SIP.Domain}}
	from := &sip.FromHeader{Address: to.Address, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(to)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{User: "boardroom", Host: "127.0.0.1", Port: 5999}})
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	res, err := cl.Do(rctx, req)
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("challenge: %v %v", res, err)
	}
	offset.Store(int64(cfg.Registrar.NonceTTL.D() + time.Minute)) // the nonce is now expired
	res, err = cl.DoDigestAuth(rctx, req, res, sipgo.DigestAuth{Username: "boardroom", Password: "s3cret-board"})
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 401 {
		t.Fatalf("expired nonce answered %d", res.StatusCode)
	}
	stale := false
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		stale = stale || strings.Contains(strings.ToLower(h.Value()), "stale=true")
	}
	if !stale || len(n.reg.Bindings("boardroom")) != 0 {
		t.Fatalf("want a stale=true challenge and no binding; got %v", res.GetHeaders("WWW-Authenticate"))
	}
}

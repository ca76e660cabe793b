package registrar

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

const realm = "video.example.com"

type obs struct {
	mu         sync.Mutex
	fail, succ int
}

func (o *obs) AuthFailed(netip.AddrPort, string, string) { o.mu.Lock(); o.fail++; o.mu.Unlock() }
func (o *obs) AuthSucceeded(netip.AddrPort, string)      { o.mu.Lock(); o.succ++; o.mu.Unlock() }

// startServer runs a sipgo UDP server with HandleRegister on a free 127.0.0.1 port.
func startServer(t *testing.T, cfgs ...Config) (*Registrar, string, *obs) {
	t.Helper()
	return startServerAlgs(t, nil, cfgs...)
}

func startServerB(b *testing.B) (*Registrar, string, *obs) {
	b.Helper()
	return startServerAlgs(b, nil)
}

func startServerAlgs(t testing.TB, algs []string, cfgs ...Config) (*Registrar, string, *obs) {
	t.Helper()
	st := state.NewLocal()
	if err := st.Propose(context.Background(), state.PutRoom(state.Room{Name: "boardroom",
		HA1MD5: digest.HA1(digest.MD5, "boardroom", realm, "s3cret"), HA1SHA256: digest.HA1(digest.SHA256, "boardroom", realm, "s3cret")})); err != nil {
		t.Fatal(err)
	}
	auth, err := digest.New(digest.Config{Realm: realm, Secret: []byte("0123456789abcdef0123"), Algorithms: algs})
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := sipgo.NewUA()
	srv, _ := sipgo.NewServer(ua)
	cl, _ := sipgo.NewClient(ua)
	o := &obs{}
	cfg := Config{}
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	cfg.Domain, cfg.NodeID = realm, "n1"
	reg, err := New(cfg, st, auth, cl, o)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRegister(reg.HandleRegister)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeUDP(pc) }()
	t.Cleanup(func() { _ = pc.Close(); <-done; _ = ua.Close() })
	return reg, pc.LocalAddr().String(), o
}

func register(t *testing.T, addr, user, pass string, expires string) *sip.Response {
	t.Helper()
	return registerContact(t, addr, user, pass, expires, "<sip:"+user+"@127.0.0.1:5099>")
}

func registerContact(t *testing.T, addr, user, pass, expires, contact string) *sip.Response {
	t.Helper()
	ua, _ := sipgo.NewUA()
	t.Cleanup(func() { _ = ua.Close() })
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: realm}})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: realm}, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(8)}}})
	req.AppendHeader(sip.NewHeader("Contact", contact))
	req.AppendHeader(sip.NewHeader("Expires", expires))
	req.SetDestination(addr)
	req.SetTransport("UDP")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 401 {
		t.Fatalf("first answer %d, want 401", res.StatusCode)
	}
	res, err = cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRegisterUDP(t *testing.T) {
	cases := []struct {
		name     string
		user     string
		pass     string
		want     int
		bindings int
	}{
		{"good password", "boardroom", "s3cret", 200, 1},
		{"wrong password", "boardroom", "wrong", 403, 0},
		{"unknown user", "ghost", "s3cret", 403, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg, addr, o := startServer(t)
			res := register(t, addr, tc.user, tc.pass, "600")
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
			if got := len(reg.Bindings(tc.user)); got != tc.bindings {
				t.Fatalf("bindings %d, want %d", got, tc.bindings)
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			if tc.want == 200 && o.succ != 1 || tc.want != 200 && o.fail != 1 {
				t.Errorf("observer: succ=%d fail=%d", o.succ, o.fail)
			}
		})
	}
}

func TestRegisterTooBrief(t *testing.T) {
	_, addr, _ := startServer(t)
	res := register(t, addr, "boardroom", "s3cret", "10")
	if res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil {
		t.Fatalf("got %d, want 423 with Min-Expires", res.StatusCode)
	}
}

func TestUnregister(t *testing.T) {
	cases := []struct {
		name    string
		contact string
		expires string
		want    int
		left    int
	}{
		{"expires zero", "<sip:boardroom@127.0.0.1:5099>", "0", 200, 1},
		{"wildcard", "*", "0", 200, 0},
		{"wildcard without expires zero", "*", "60", 400, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg, addr, _ := startServer(t)
			register(t, addr, "boardroom", "s3cret", "600")
			registerContact(t, addr, "boardroom", "s3cret", "600", "<sip:boardroom@127.0.0.1:5098>")
			if n := len(reg.Bindings("boardroom")); n != 2 {
				t.Fatalf("bindings %d, want 2", n)
			}
			res := registerContact(t, addr, "boardroom", "s3cret", tc.expires, tc.contact)
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
			if n := len(reg.Bindings("boardroom")); n != tc.left {
				t.Fatalf("bindings %d, want %d", n, tc.left)
			}
		})
	}
}

func TestExpiryAndKeepalive(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reg, addr, _ := startServer(t, Config{Now: clock, KeepaliveInterval: 200 * time.Millisecond})
	res := register(t, addr, "boardroom", "s3cret", "120")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	b := reg.Bindings("boardroom")
	if len(b) != 1 || b[0].Transport != "UDP" || b[0].Node != "n1" {
		t.Fatalf("binding %+v", b)
	}
	// Keepalive: point the binding's flow at a socket that never answers; two failed pings drop it.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	bb := b[0]
	bb.Source = dead.LocalAddr().String()
	if err := reg.store.Propose(context.Background(), state.PutBinding(bb)); err != nil {
		t.Fatal(err)
	}
	reg.Tick(context.Background())
	if len(reg.Bindings("boardroom")) != 1 {
		t.Fatal("dropped after one failure")
	}
	reg.Tick(context.Background())
	if len(reg.Bindings("boardroom")) != 0 {
		t.Fatal("binding kept after two keepalive failures")
	}
	// Expiry with the injected clock.
	register(t, addr, "boardroom", "s3cret", "120")
	mu.Lock()
	now = now.Add(121 * time.Second)
	mu.Unlock()
	if len(reg.Bindings("boardroom")) != 0 {
		t.Fatal("expired binding still visible")
	}
}

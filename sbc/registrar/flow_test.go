package registrar

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// TestRouteOverTCPFlow: a room registers over TCP; an OPTIONS sent by the server side through
// Route(b) reaches the room over that same connection (the room has no listener, so any other
// path would fail).
func TestRouteOverTCPFlow(t *testing.T) {
	reg, _, _ := startServer(t)
	srvUA := reg.client // the registrar's client shares the server UA
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(srvUA.UserAgent)
	srv.OnRegister(reg.HandleRegister)
	go func() { _ = srv.ServeTCP(ln) }()
	t.Cleanup(func() { _ = ln.Close() })

	roomUA, _ := sipgo.NewUA()
	t.Cleanup(func() { _ = roomUA.Close() })
	roomSrv, _ := sipgo.NewServer(roomUA)
	got := make(chan *sip.Request, 1)
	roomSrv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		got <- req
	})
	cl, _ := sipgo.NewClient(roomUA, sipgo.WithClientHostname("127.0.0.1"))
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "boardroom", Host: realm}})
	req.AppendHeader(sip.NewHeader("Contact", "<sip:boardroom@127.0.0.1:5099;transport=tcp>"))
	req.SetDestination(ln.Addr().String())
	req.SetTransport("TCP")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("first answer %v %v", res, err)
	}
	res, err = cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "boardroom", Password: "s3cret"})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("register: %v %v", res, err)
	}
	bs := reg.Bindings("boardroom")
	if len(bs) != 1 || bs[0].Transport != "TCP" {
		t.Fatalf("bindings %+v", bs)
	}
	dst, tr := Route(bs[0])
	var to sip.Uri
	_ = sip.ParseUri(bs[0].Contact, &to)
	opt := sip.NewRequest(sip.OPTIONS, to)
	opt.SetDestination(dst)
	opt.SetTransport(tr)
	ores, err := reg.client.Do(ctx, opt)
	if err != nil || ores.StatusCode != 200 {
		t.Fatalf("OPTIONS over the flow: %v %v", ores, err)
	}
	select {
	case r := <-got:
		if r.Source() != ln.Addr().String() {
			t.Errorf("OPTIONS came from %s, want our listener %s", r.Source(), ln.Addr())
		}
	case <-ctx.Done():
		t.Fatal("room never saw the OPTIONS")
	}
}

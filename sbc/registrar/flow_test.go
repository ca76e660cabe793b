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

// TestOutboundFlowsKeptPerRegID (RFC 5626 section 6): a room registering the same Contact and
// +sip.instance on two flows with reg-id 1 and 2 keeps both bindings, each with its own source;
// a re-registration with reg-id 1 from a new flow replaces that binding only; one with no
// instance is keyed by its Contact as before; a bad reg-id is refused.
func TestOutboundFlowsKeptPerRegID(t *testing.T) {
	reg, addr, _ := startServer(t)
	const inst = `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"`
	contact := "<sip:boardroom@127.0.0.1:5099;transport=udp>" + inst
	sources := map[int]string{}
	for _, id := range []string{"1", "2"} {
		res := registerContact(t, addr, "boardroom", "s3cret", "300", contact+";reg-id="+id)
		if res.StatusCode != 200 {
			t.Fatalf("reg-id %s: %d", id, res.StatusCode)
		}
		if headerValue(res, "Require") != "outbound" {
			t.Errorf("reg-id %s: 200 without Require: outbound", id)
		}
	}
	bs := reg.Bindings("boardroom")
	if len(bs) != 2 {
		t.Fatalf("want 2 flows, got %+v", bs)
	}
	for _, b := range bs {
		if b.Instance != "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>" || (b.RegID != 1 && b.RegID != 2) {
			t.Fatalf("binding %+v", b)
		}
		sources[b.RegID] = b.Source
	}
	if sources[1] == sources[2] {
		t.Fatalf("both flows have source %s", sources[1])
	}
	if res := registerContact(t, addr, "boardroom", "s3cret", "300", contact+";reg-id=1"); res.StatusCode != 200 {
		t.Fatalf("re-register: %d", res.StatusCode)
	}
	bs = reg.Bindings("boardroom")
	if len(bs) != 2 {
		t.Fatalf("re-registration of reg-id 1: want 2 flows, got %+v", bs)
	}
	for _, b := range bs {
		if b.RegID == 1 && b.Source == sources[1] {
			t.Errorf("reg-id 1 still on its old flow %s", b.Source)
		}
		if b.RegID == 2 && b.Source != sources[2] {
			t.Errorf("reg-id 2 moved to %s", b.Source)
		}
	}
	if res := registerContact(t, addr, "boardroom", "s3cret", "300", contact+";reg-id=x"); res.StatusCode != 400 {
		t.Errorf("reg-id x: %d, want 400", res.StatusCode)
	}
	// Unregistering one flow leaves the other.
	if res := registerContact(t, addr, "boardroom", "s3cret", "0", contact+";reg-id=2"); res.StatusCode != 200 {
		t.Fatalf("unregister reg-id 2: %d", res.StatusCode)
	}
	if bs = reg.Bindings("boardroom"); len(bs) != 1 || bs[0].RegID != 1 {
		t.Fatalf("after unregistering reg-id 2: %+v", bs)
	}
}

func headerValue(res *sip.Response, name string) string {
	if h := res.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// FuzzFlowOf: any +sip.instance and reg-id a Contact carries gives a flow or an error, never a
// crash, and a reg-id only with an instance, in 1..2^31-1.
func FuzzFlowOf(f *testing.F) {
	f.Add(`"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"`, "1")
	f.Add(`"<urn:uuid:x>"`, "0")
	f.Add("", "2")
	f.Add(`"`, "99999999999")
	f.Add(`""`, "-1")
	f.Fuzz(func(t *testing.T, instance, regID string) {
		c := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "r", Host: "192.0.2.1"}, Params: sip.NewParams()}
		c.Params.Add("+sip.instance", instance)
		c.Params.Add("reg-id", regID)
		inst, id, err := flowOf(c)
		if err != nil {
			return
		}
		if id < 0 || (inst == "" && id != 0) {
			t.Fatalf("flowOf(%q, %q) = %q, %d", instance, regID, inst, id)
		}
	})
}

package registrar

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	icholy "github.com/icholy/digest"
)

func headerNames(res *sip.Response) []string {
	var n []string
	for _, h := range res.Headers() {
		n = append(n, strings.ToLower(h.Name()))
	}
	slices.Sort(n)
	return n
}

// TestUnknownUserLooksLikeWrongPassword: an unknown user gets the same status and the same set of
// headers as a known user with a wrong password.
func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	_, addr, _ := startServer(t)
	known := register(t, addr, "boardroom", "wrong", "600")
	unknown := register(t, addr, "ghost", "wrong", "600")
	if known.StatusCode != unknown.StatusCode || known.Reason != unknown.Reason {
		t.Fatalf("known %d %s, unknown %d %s", known.StatusCode, known.Reason, unknown.StatusCode, unknown.Reason)
	}
	if a, b := headerNames(known), headerNames(unknown); !slices.Equal(a, b) {
		t.Fatalf("headers differ: %v vs %v", a, b)
	}
}

// BenchmarkRegisterUDP measures one authenticated REGISTER round trip over loopback UDP
// (client build + server parse + digest verify + store write + 200).
func BenchmarkRegisterUDP(b *testing.B) {
	reg, addr, _ := startServerB(b)
	_ = reg
	ua, _ := sipgo.NewUA()
	b.Cleanup(func() { _ = ua.Close() })
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	mk := func() *sip.Request {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "boardroom", Host: realm}})
		req.AppendHeader(sip.NewHeader("Contact", "<sip:boardroom@127.0.0.1:5099>"))
		req.SetDestination(addr)
		req.SetTransport("UDP")
		return req
	}
	ctx := context.Background()
	res, err := cl.Do(ctx, mk())
	if err != nil || res.StatusCode != 401 {
		b.Fatal(res, err)
	}
	ch, _ := icholy.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cr, _ := icholy.Digest(ch, icholy.Options{Method: "REGISTER", URI: "sip:" + realm, Username: "boardroom", Password: "s3cret", Count: i + 1})
		req := mk()
		req.AppendHeader(sip.NewHeader("Authorization", cr.String()))
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := cl.Do(cctx, req)
		cancel()
		if err != nil || res.StatusCode != 200 {
			b.Fatal(res, err)
		}
	}
}

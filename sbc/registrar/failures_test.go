package registrar

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

// failures collects what the registrar reports to OnFailure.
type failures struct {
	mu  sync.Mutex
	got []Failure
}

func (f *failures) add(x Failure) { f.mu.Lock(); f.got = append(f.got, x); f.mu.Unlock() }

func (f *failures) all() []Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Failure(nil), f.got...)
}

// challengeOnly sends an unauthenticated REGISTER for user and returns the client, the request
// and the 401.
func challengeOnly(t *testing.T, addr, user string) (*sipgo.Client, *sip.Request, *sip.Response) {
	t.Helper()
	ua, _ := sipgo.NewUA()
	t.Cleanup(func() { _ = ua.Close() })
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: realm}})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: realm}, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(8)}}})
	req.AppendHeader(sip.NewHeader("Contact", "<sip:"+user+"@127.0.0.1:5099>"))
	req.AppendHeader(sip.NewHeader("User-Agent", "Room 1.0"))
	req.SetDestination(addr)
	req.SetTransport("UDP")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("first REGISTER: %v %v", res, err)
	}
	return cl, req, res
}

// TestRegistrationFailures: every way a configured room's registration fails is reported with
// its reason; unknown users and completed registrations are not.
func TestRegistrationFailures(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	later := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	start := func(t *testing.T) (*Registrar, string, *obs, *failures) {
		f := &failures{}
		reg, addr, o := startServerAlgs(t, []string{digest.MD5}, Config{Now: clock, OnFailure: f.add, ChallengeTimeout: 32 * time.Second})
		return reg, addr, o, f
	}
	t.Run("wrong password", func(t *testing.T) {
		_, addr, _, f := start(t)
		register(t, addr, "boardroom", "wrong", "600")
		if got := f.all(); len(got) != 1 || got[0].Reason != FailBadCredentials || got[0].Code != 403 || got[0].Room != "boardroom" {
			t.Fatalf("failures %+v", got)
		}
	})
	t.Run("unknown user is not a room's failure", func(t *testing.T) {
		reg, addr, _, f := start(t)
		register(t, addr, "ghost", "s3cret", "600")
		challengeOnly(t, addr, "ghost")
		later(time.Minute)
		reg.SweepChallenges()
		if got := f.all(); len(got) != 0 {
			t.Fatalf("failures %+v", got)
		}
	})
	t.Run("unsupported algorithm", func(t *testing.T) {
		_, addr, o, f := start(t)
		cl, req, res := challengeOnly(t, addr, "boardroom")
		chal := res.GetHeader("WWW-Authenticate").Value()
		nonce := chal[strings.Index(chal, `nonce="`)+7:]
		nonce = nonce[:strings.IndexByte(nonce, '"')]
		req = req.Clone()
		req.RemoveHeader("Via")
		req.CSeq().SeqNo++
		req.AppendHeader(sip.NewHeader("Authorization", `Digest username="boardroom", realm="`+realm+`", nonce="`+nonce+
			`", uri="sip:`+realm+`", response="`+strings.Repeat("ab", 32)+`", algorithm=SHA-512-256, qop=auth, nc=00000001, cnonce="c0ffee"`))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := cl.Do(ctx, req)
		if err != nil || res.StatusCode != 403 {
			t.Fatalf("answer %v %v", res, err)
		}
		got := f.all()
		if len(got) != 1 || got[0].Reason != FailUnsupported || !strings.Contains(got[0].Detail, "SHA-512-256") || got[0].UserAgent != "Room 1.0" {
			t.Fatalf("failures %+v", got)
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.fail != 0 {
			t.Fatal("an unsupported algorithm counted as a password guess")
		}
	})
	t.Run("challenge not answered", func(t *testing.T) {
		reg, addr, _, f := start(t)
		challengeOnly(t, addr, "boardroom")
		challengeOnly(t, addr, "boardroom") // another source (its own socket): reported apart
		later(31 * time.Second)
		reg.SweepChallenges()
		if got := f.all(); len(got) != 0 {
			t.Fatalf("reported before the timeout: %+v", got)
		}
		later(2 * time.Second)
		reg.SweepChallenges()
		got := f.all()
		if len(got) != 2 || got[0].Reason != FailNoAnswer || got[0].Code != 401 || !strings.Contains(got[0].Detail, "offered MD5") {
			t.Fatalf("failures %+v", got)
		}
		reg.SweepChallenges()
		if len(f.all()) != 2 {
			t.Fatal("reported twice")
		}
	})
	t.Run("challenge answered", func(t *testing.T) {
		reg, addr, _, f := start(t)
		if res := register(t, addr, "boardroom", "s3cret", "600"); res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		later(time.Minute)
		reg.SweepChallenges()
		if got := f.all(); len(got) != 0 {
			t.Fatalf("failures %+v", got)
		}
	})
}

package digest

import (
	"testing"
	"time"
)

// TestSustainedRegistrations: rooms that each answer a fresh challenge once, more of them
// within a nonce's lifetime than the replay table holds (a sustained REGISTER rate), must all
// authenticate. The table used to fill with still-fresh nonces and then answer every new one
// Stale after a scan of the whole table (the SIPp bench's collapse at 3,000 REGISTER/s).
func TestSustainedRegistrations(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, err := New(Config{Realm: "video.example.com", Secret: []byte("0123456789abcdef0123"), Now: c.now, MaxNonces: 4})
	if err != nil {
		t.Fatal(err)
	}
	look := lookupFor("boardroom", "s3cret", a.Realm())
	for i := range 20 {
		c.t = c.t.Add(time.Millisecond)
		h := respond(t, a.Challenge(false)[0], "boardroom", "s3cret", "REGISTER", "sip:video.example.com", 1)
		if _, r := a.Verify("REGISTER", "sip:video.example.com", h, look); r != OK {
			t.Fatalf("registration %d: %v, want ok", i, r)
		}
		if _, r := a.Verify("REGISTER", "sip:video.example.com", h, look); r != Replay {
			t.Fatalf("registration %d replayed: %v, want replay", i, r)
		}
	}
}

// TestReplayWindow: a nonce stays replay-protected while it is in the table's window; once
// more nonces than the table holds were issued after it, it is answered Stale (a fresh
// challenge), never accepted again.
func TestReplayWindow(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, err := New(Config{Realm: "video.example.com", Secret: []byte("0123456789abcdef0123"), Now: c.now, MaxNonces: 4})
	if err != nil {
		t.Fatal(err)
	}
	look := lookupFor("boardroom", "s3cret", a.Realm())
	chal := a.Challenge(false)[0]
	verify := func(nc int) Result {
		_, r := a.Verify("REGISTER", "sip:video.example.com", respond(t, chal, "boardroom", "s3cret", "REGISTER", "sip:video.example.com", nc), look)
		return r
	}
	for _, step := range []struct {
		nc   int
		want Result
	}{{1, OK}, {1, Replay}, {3, OK}, {2, Replay}, {4, OK}} {
		if r := verify(step.nc); r != step.want {
			t.Fatalf("nc %d: %v, want %v", step.nc, r, step.want)
		}
	}
	for range 4 {
		a.Challenge(false) // the window moves past the first nonce
	}
	for _, nc := range []int{4, 5} {
		if r := verify(nc); r != Stale {
			t.Fatalf("nc %d after the window moved: %v, want stale", nc, r)
		}
	}
}

package digest

import (
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	f.Add(`Digest username="a", realm="r", nonce="n", uri="sip:x", response="abc", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c"`)
	f.Add(`Digest username="a\"b,c", uri="sip:x"`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err == nil && c == nil {
			t.Fatal("nil credentials without error")
		}
	})
}

func FuzzVerify(f *testing.F) {
	f.Add(`Digest username="boardroom", realm="video.example.com", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:x", response="00", qop=auth, nc=00000001, cnonce="c"`)
	a, err := New(Config{Realm: "video.example.com", Secret: []byte("0123456789abcdef0123"), Now: func() time.Time { return time.Unix(1e9, 0) }})
	if err != nil {
		f.Fatal(err)
	}
	look := lookupFor("boardroom", "s3cret", a.Realm())
	f.Fuzz(func(t *testing.T, s string) {
		if _, r := a.Verify("REGISTER", "sip:x", s, look); r == OK {
			t.Fatalf("fuzzed header authenticated: %q", s)
		}
	})
}

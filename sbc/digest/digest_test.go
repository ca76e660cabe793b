package digest

import (
	"strings"
	"testing"
	"time"

	icholy "github.com/icholy/digest"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestAuth(t *testing.T) (*Authenticator, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, err := New(Config{Realm: "video.example.com", Secret: []byte("0123456789abcdef0123"), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

func lookupFor(user, pass, realm string) Lookup {
	return func(u string) (string, string, bool) {
		if u != user {
			return "", "", false
		}
		return HA1(MD5, user, realm, pass), HA1(SHA256, user, realm, pass), true
	}
}

// respond computes credentials with icholy/digest (the client library sipgo uses).
func respond(t *testing.T, chal, user, pass, method, uri string, nc int) string {
	t.Helper()
	ch, err := icholy.ParseChallenge(chal)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := icholy.Digest(ch, icholy.Options{Method: method, URI: uri, Username: user, Password: pass, Count: nc})
	if err != nil {
		t.Fatal(err)
	}
	return cr.String()
}

func TestVerifyInterop(t *testing.T) {
	const uri = "sip:video.example.com"
	for i, alg := range []string{SHA256, MD5} {
		t.Run(alg, func(t *testing.T) {
			a, clk := newTestAuth(t)
			chal := a.Challenge(false)[i]
			if !strings.Contains(chal, "algorithm="+alg) {
				t.Fatalf("challenge %d = %q", i, chal)
			}
			look := lookupFor("boardroom", "s3cret", a.Realm())
			cases := []struct {
				name   string
				user   string
				pass   string
				method string
				reqURI string
				nc     int
				want   Result
			}{
				{"good", "boardroom", "s3cret", "REGISTER", uri, 1, OK},
				{"next nc", "boardroom", "s3cret", "REGISTER", uri, 2, OK},
				{"replayed nc", "boardroom", "s3cret", "REGISTER", uri, 2, Replay},
				{"lower nc", "boardroom", "s3cret", "REGISTER", uri, 1, Replay},
				{"wrong password", "boardroom", "nope", "REGISTER", uri, 3, BadCredentials},
				{"unknown user", "ghost", "s3cret", "REGISTER", uri, 3, UnknownUser},
				{"other method", "boardroom", "s3cret", "INVITE", uri, 3, BadCredentials},
				{"other uri", "boardroom", "s3cret", "REGISTER", "sip:other.example.com", 3, BadCredentials},
			}
			for _, tc := range cases {
				hdr := respond(t, chal, tc.user, tc.pass, "REGISTER", uri, tc.nc)
				user, got := a.Verify(tc.method, tc.reqURI, hdr, look)
				if got != tc.want || user != tc.user {
					t.Errorf("%s: got (%q, %v), want (%q, %v)", tc.name, user, got, tc.user, tc.want)
				}
			}
			clk.t = clk.t.Add(6 * time.Minute)
			hdr := respond(t, chal, "boardroom", "s3cret", "REGISTER", uri, 9)
			if _, got := a.Verify("REGISTER", uri, hdr, look); got != Stale {
				t.Errorf("expired nonce: got %v, want stale", got)
			}
			if s := a.Challenge(true)[0]; !strings.Contains(s, "stale=true") {
				t.Errorf("stale challenge %q", s)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	a, _ := newTestAuth(t)
	look := lookupFor("boardroom", "s3cret", a.Realm())
	chal := a.Challenge(false)[0]
	good := respond(t, chal, "boardroom", "s3cret", "REGISTER", "sip:x", 1)
	other, _ := New(Config{Realm: a.Realm(), Secret: []byte("another secret, 16+ bytes")})
	foreign := respond(t, other.Challenge(false)[0], "boardroom", "s3cret", "REGISTER", "sip:x", 1)
	cases := []struct {
		name string
		hdr  string
		want Result
	}{
		{"empty", "", Missing},
		{"basic", "Basic Zm9vOmJhcg==", Malformed},
		{"no response", `Digest username="boardroom", nonce="x", uri="sip:x"`, Malformed},
		{"duplicate", good + `, username="boardroom"`, Malformed},
		{"control char", strings.Replace(good, "boardroom", "board\x00room", 1), Malformed},
		{"foreign nonce", foreign, BadCredentials},
		{"wrong realm", strings.Replace(good, `realm="video.example.com"`, `realm="evil"`, 1), BadCredentials},
		{"sess algorithm", strings.Replace(good, "algorithm=SHA-256", "algorithm=SHA-256-sess", 1), Unsupported},
		{"SHA-512-256", strings.Replace(good, "algorithm=SHA-256", "algorithm=SHA-512-256", 1), Unsupported},
		{"no qop", strings.Replace(good, "qop=auth", "qop=auth-int", 1), BadCredentials},
		{"good", good, OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := a.Verify("REGISTER", "sip:x", tc.hdr, look); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		wantErr bool
		want    Credentials
	}{
		{"tokens and quotes", `Digest username="a", realm="r", nonce="n", uri="sip:x", response="abc", algorithm=SHA-256, qop=auth, nc=0000000a, cnonce="c"`,
			false, Credentials{Username: "a", Realm: "r", Nonce: "n", URI: "sip:x", Response: "abc", Algorithm: "SHA-256", QOP: "auth", Nc: 10, HasNc: true, Cnonce: "c"}},
		{"escapes and comma in quotes", `digest  username="a\"b,c\\", uri="sip:x"`, false, Credentials{Username: `a"b,c\`, URI: "sip:x"}},
		{"unknown param ignored", `Digest foo=bar, username="u"`, false, Credentials{Username: "u"}},
		{"tabs", "Digest\tusername=\"u\"\t,\turi=\"x\"", false, Credentials{Username: "u", URI: "x"}},
		{"utf8 user", `Digest username="zoë"`, false, Credentials{Username: "zoë"}},
		{"no params", "Digest", true, Credentials{}},
		{"scheme glued", `Digestusername="u"`, true, Credentials{}},
		{"duplicate", `Digest username="a", USERNAME="b"`, true, Credentials{}},
		{"unterminated", `Digest username="a`, true, Credentials{}},
		{"dangling escape", `Digest username="a\`, true, Credentials{}},
		{"missing comma", `Digest username="a" realm="b"`, true, Credentials{}},
		{"trailing comma", `Digest username="a",`, true, Credentials{}},
		{"empty value", `Digest username=, realm="b"`, true, Credentials{}},
		{"nc short", `Digest nc=1`, true, Credentials{}},
		{"nc quoted", `Digest nc="00000001"`, true, Credentials{}},
		{"nc not hex", `Digest nc=0000000g`, true, Credentials{}},
		{"newline", "Digest username=\"a\r\nX: y\"", true, Credentials{}},
		{"del", "Digest username=\"a\x7f\"", true, Credentials{}},
		{"too long", "Digest username=\"" + strings.Repeat("a", MaxHeaderLen) + "\"", true, Credentials{}},
		{"value too long", "Digest username=\"" + strings.Repeat("a", MaxValueLen+1) + "\"", true, Credentials{}},
		{"too many params", "Digest " + strings.Repeat("x=y, ", MaxParams) + "z=1", true, Credentials{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && *got != tc.want {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}
}

func TestUnknownUserSameChallenge(t *testing.T) {
	a, _ := newTestAuth(t)
	c1, c2 := a.Challenge(false), a.Challenge(false)
	if len(c1) != 2 || len(c2) != 2 || c1[0] == c2[0] {
		t.Fatalf("challenges %q %q", c1, c2)
	}
}

func BenchmarkParseVerify(b *testing.B) {
	c := &clock{t: time.Now()}
	a, _ := New(Config{Realm: "video.example.com", Secret: []byte("0123456789abcdef0123"), Now: c.now})
	look := lookupFor("boardroom", "s3cret", a.Realm())
	ch, _ := icholy.ParseChallenge(a.Challenge(false)[0])
	hdrs := make([]string, b.N)
	for i := range hdrs {
		cr, _ := icholy.Digest(ch, icholy.Options{Method: "REGISTER", URI: "sip:x", Username: "boardroom", Password: "s3cret", Count: i + 1})
		hdrs[i] = cr.String()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, r := a.Verify("REGISTER", "sip:x", hdrs[i], look); r != OK {
			b.Fatal(r)
		}
	}
}

func TestURIMatches(t *testing.T) {
	for _, tt := range []struct {
		got, want string
		ok        bool
	}{
		{"sip:video.test", "sip:video.test", true},
		{"sip:VIDEO.test;transport=tcp", "sip:video.test", true},
		{"sip:127.0.0.1:5060", "sip:127.0.0.1", true}, // SIPp echoes the port it sent to
		{"sip:127.0.0.1", "sip:127.0.0.1:5061", true},
		{"sip:127.0.0.1:5070", "sip:127.0.0.1", false},
		{"sip:other.test", "sip:video.test", false},
		{"sip:room@video.test", "sip:video.test", false},
	} {
		if got := uriMatches(tt.got, tt.want); got != tt.ok {
			t.Errorf("uriMatches(%q, %q) = %v, want %v", tt.got, tt.want, got, tt.ok)
		}
	}
}

// TestParamBits: the bits of nc and userhash are those of their names in paramNames, and a
// parameter Parse does not read has none.
func TestParamBits(t *testing.T) {
	var c Credentials
	for name, want := range map[string]uint32{"nc": bitNc, "userhash": bitUserhash, "username": 1, "stale": 0} {
		if bit, _ := c.field(name); bit != want {
			t.Errorf("field(%q) bit %#x, want %#x", name, bit, want)
		}
	}
	if _, dst := c.field("qop"); dst != &c.QOP {
		t.Error("qop is not stored in QOP")
	}
}

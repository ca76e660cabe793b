package deploy

import (
	"crypto/md5"
	"crypto/sha256"
	"slices"
	"testing"
)

// The test UA's digest against the published vectors, so a container test that fails to register
// points at the node, not at the test's arithmetic.
func TestDigestResponseVectors(t *testing.T) {
	for _, c := range []struct {
		name string
		got  string
		want string
	}{
		{"RFC 2617 3.5 MD5", digestResponse(md5.New, "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
			"/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "auth"),
			"6629fae49393a05397450978507c4ef1"},
		{"RFC 7616 3.9.1 SHA-256", digestResponse(sha256.New, "Mufasa", "http-auth@example.org", "Circle of Life", "GET",
			"/dir/index.html", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
			"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth"),
			"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, c.got, c.want)
		}
	}
}

func TestParseSIPAndHelpers(t *testing.T) {
	raw := "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=5060\r\n" +
		"Contact: <sip:a@10.0.0.1:5999>;expires=300, <sip:b@10.0.0.1:5998>;expires=60\r\n" +
		"Contact: <sip:c@10.0.0.1>\r\nWWW-Authenticate: Digest realm=\"video.test\", nonce=\"n,1\", qop=\"auth,auth-int\", algorithm=SHA-256\r\n" +
		"l: 4\r\n\r\nbodyEXTRA"
	m, err := parseSIP([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.status != 200 || string(m.body) != "body" || param(m.get("Via"), "branch") != "z9hG4bKabc" {
		t.Fatalf("parsed %+v", m)
	}
	if got, want := contacts(m), []string{"sip:a@10.0.0.1:5999", "sip:b@10.0.0.1:5998", "sip:c@10.0.0.1"}; !slices.Equal(got, want) {
		t.Fatalf("contacts %q, want %q", got, want)
	}
	p := authParams(`realm="video.test", nonce="n,1", qop="auth,auth-int", algorithm=SHA-256`)
	if p["realm"] != "video.test" || p["nonce"] != "n,1" || !containsToken(p["qop"], "auth") || p["algorithm"] != "SHA-256" {
		t.Fatalf("auth params %q", p)
	}
}

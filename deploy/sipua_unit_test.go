package deploy

import (
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

// TestAnswerChallenge: the test UA's answers to a node's challenges (SHA-256 first, then MD5:
// it answers the first) pass the node's own verifier, so a container test that fails to
// register points at the node's setup, not at the test's arithmetic.
func TestAnswerChallenge(t *testing.T) {
	for _, algs := range [][]string{{"SHA-256", "MD5"}, {"MD5"}} {
		a, err := digest.New(digest.Config{Realm: "video.test", Secret: []byte("0123456789abcdef0123"), Algorithms: algs})
		if err != nil {
			t.Fatal(err)
		}
		auth, err := answerChallenge(a.Challenge(false), "boardroom", "s3cret-board", "REGISTER", "sip:video.test")
		if err != nil {
			t.Fatal(err)
		}
		lookup := func(user string) (string, string, bool) {
			return digest.HA1("MD5", user, "video.test", "s3cret-board"), digest.HA1("SHA-256", user, "video.test", "s3cret-board"), user == "boardroom"
		}
		if user, res := a.Verify("REGISTER", "sip:video.test", auth, lookup); res != digest.OK || user != "boardroom" {
			t.Errorf("%v: %q verifies as %s (%q)", algs, auth, res, user)
		}
		if want := "algorithm=" + algs[0]; !strings.Contains(auth, want) {
			t.Errorf("%v: %q does not answer the first challenge (%s)", algs, auth, want)
		}
	}
	if _, err := answerChallenge([]string{`Digest realm="x", nonce="n", algorithm=AKAv1-MD5`}, "u", "p", "REGISTER", "sip:x"); err == nil {
		t.Error("answered an algorithm it does not know")
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
}

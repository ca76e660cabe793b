package state

import (
	"errors"
	"testing"
	"time"
)

func TestACMEStateApplyAndSnapshot(t *testing.T) {
	s := New()
	empty := s.Hash()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	cmds := []Command{
		PutACMEAccount(ACMEAccount{Directory: "https://ca.example/dir", KeyPEM: []byte("k"), URL: "https://ca.example/acct/1"}),
		PutChallenge(Challenge{Type: "tls-alpn-01", Domain: "SIP.example.com", Token: "t1", KeyAuth: "t1.x", Expires: now}),
		PutCertificate(Certificate{Domains: []string{"sip.example.com"}, CertPEM: []byte("c"), KeyPEM: []byte("k"),
			Serial: "0a", NotBefore: now, NotAfter: now.Add(47 * 24 * time.Hour), Issued: now, Node: "edge1"}),
	}
	for _, c := range cmds {
		if err := s.Apply(c); err != nil {
			t.Fatalf("%s: %v", c.Type, err)
		}
	}
	if ch, ok := s.ChallengeFor("tls-alpn-01", "sip.EXAMPLE.com"); !ok || ch.Token != "t1" {
		t.Fatalf("challenge by domain: %+v %v", ch, ok)
	}
	r := roundTrip(t, s)
	if r.Hash() != s.Hash() {
		t.Fatal("restored state differs")
	}
	if c, ok := r.Certificate(); !ok || c.Serial != "0a" || c.Node != "edge1" {
		t.Fatalf("restored certificate %+v", c)
	}
	if a, ok := r.ACMEAccount(); !ok || a.URL != "https://ca.example/acct/1" {
		t.Fatalf("restored account %+v", a)
	}
	if err := r.Apply(DeleteChallenge("t1")); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Challenge("t1"); ok {
		t.Fatal("challenge not deleted")
	}
	// A state that never used ACME hashes as before (no "acme" key in snapshots).
	if New().Hash() != empty {
		t.Fatal("empty hash changed")
	}
	// Bad payloads are refused without stopping the node.
	for _, c := range []Command{PutCertificate(Certificate{Serial: "1"}), PutChallenge(Challenge{}), PutACMEAccount(ACMEAccount{})} {
		if err := s.Apply(c); !errors.Is(err, ErrBadPayload) || Fatal(err) {
			t.Errorf("%s: %v, want a non-fatal ErrBadPayload", c.Type, err)
		}
	}
	// A newer version of an ACME command is skipped (ignorable), not fatal.
	c := cmds[2]
	c.Version = cmdVersion + 1
	if err := s.Apply(c); err != nil {
		t.Fatalf("newer ignorable command: %v", err)
	}
}

package state

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// ACME state: the account, the certificate and the pending challenges of the certificate that
// the leader obtains from an ACME CA (RFC 8555) for every node. The private keys are in the
// replicated log and snapshots (data_dir, mode 0600 like the rest of the Raft files): they are
// never logged and never served by the API.

// Command types of the ACME state. They are ignorable: an older node skips them during a
// rolling upgrade and keeps serving its configured certificate.
const (
	CmdPutACMEAccount  CmdType = Ignorable | 24
	CmdPutCertificate  CmdType = Ignorable | 25
	CmdPutChallenge    CmdType = Ignorable | 26
	CmdDeleteChallenge CmdType = Ignorable | 27
)

func init() {
	for t, name := range map[CmdType]string{CmdPutACMEAccount: "put-acme-account",
		CmdPutCertificate: "put-certificate", CmdPutChallenge: "put-challenge", CmdDeleteChallenge: "delete-challenge"} {
		if old, ok := cmdNames[t]; ok { // two branches took the same number
			panic(fmt.Sprintf("state: command type %d is both %s and %s", uint8(t), old, name))
		}
		cmdNames[t] = name
	}
}

// ACMEAccount is the account key registered with one ACME directory.
type ACMEAccount struct {
	Directory string `json:"directory"`
	KeyPEM    []byte `json:"key_pem"` // PKCS #8
	URL       string `json:"url,omitempty"`
}

// Certificate is the certificate every node serves on its TLS listeners.
type Certificate struct {
	Domains   []string  `json:"domains"`
	CertPEM   []byte    `json:"cert_pem"` // leaf first, then the chain
	KeyPEM    []byte    `json:"key_pem"`  // PKCS #8
	Serial    string    `json:"serial"`   // hex
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Issued    time.Time `json:"issued"`
	Node      string    `json:"node"` // the node that obtained it
}

// Challenge is a pending ACME challenge that every node answers (the CA may reach any of them).
type Challenge struct {
	Type    string    `json:"type"` // http-01 or tls-alpn-01
	Domain  string    `json:"domain"`
	Token   string    `json:"token"`
	KeyAuth string    `json:"key_auth"`
	Expires time.Time `json:"expires"`
}

// PutACMEAccount records the ACME account (replacing any).
func PutACMEAccount(a ACMEAccount) Command { return newCommand(CmdPutACMEAccount, a) }

// PutCertificate replaces the served certificate.
func PutCertificate(c Certificate) Command { return newCommand(CmdPutCertificate, c) }

// PutChallenge publishes a pending challenge.
func PutChallenge(c Challenge) Command { return newCommand(CmdPutChallenge, c) }

// DeleteChallenge removes a challenge by token.
func DeleteChallenge(token string) Command { return newCommand(CmdDeleteChallenge, idKey{token}) }

// acmeState is the ACME part of State (under State.mu).
type acmeState struct {
	account    *ACMEAccount
	cert       *Certificate
	challenges map[string]Challenge // by token
}

func (s *State) applyPutACMEAccount(a ACMEAccount) error {
	if len(a.KeyPEM) == 0 {
		return fmt.Errorf("%w: ACME account without a key", ErrBadPayload)
	}
	s.acme.account = &a
	return nil
}

func (s *State) applyPutCertificate(cert Certificate) error {
	if len(cert.CertPEM) == 0 || len(cert.KeyPEM) == 0 {
		return fmt.Errorf("%w: certificate without certificate or key", ErrBadPayload)
	}
	s.acme.cert = &cert
	return nil
}

func (s *State) applyPutChallenge(ch Challenge) error {
	if ch.Token == "" {
		return fmt.Errorf("%w: challenge without a token", ErrBadPayload)
	}
	if s.acme.challenges == nil {
		s.acme.challenges = map[string]Challenge{}
	}
	s.acme.challenges[ch.Token] = ch
	return nil
}

func (s *State) applyDeleteChallenge(k idKey) error {
	delete(s.acme.challenges, k.ID)
	return nil
}

// ACMEAccount returns the recorded ACME account, if any.
func (s *State) ACMEAccount() (ACMEAccount, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.acme.account == nil {
		return ACMEAccount{}, false
	}
	return *s.acme.account, true
}

// Certificate returns the certificate obtained through ACME, if any.
func (s *State) Certificate() (Certificate, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.acme.cert == nil {
		return Certificate{}, false
	}
	return *s.acme.cert, true
}

// Challenge returns the pending challenge with this token.
func (s *State) Challenge(token string) (Challenge, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.acme.challenges[token]
	return c, ok
}

// ChallengeFor returns a pending challenge of type typ for domain (case-insensitive).
func (s *State) ChallengeFor(typ, domain string) (Challenge, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.acme.challenges {
		if c.Type == typ && equalFold(c.Domain, domain) {
			return c, true
		}
	}
	return Challenge{}, false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// acmeSnapshot is the ACME part of a snapshot (absent when nothing was ever obtained, so the
// hash of a state without ACME is unchanged).
type acmeSnapshot struct {
	Account    *ACMEAccount `json:"account,omitempty"`
	Cert       *Certificate `json:"certificate,omitempty"`
	Challenges []Challenge  `json:"challenges,omitempty"`
}

func (a *acmeState) freeze() *acmeSnapshot {
	if a.account == nil && a.cert == nil && len(a.challenges) == 0 {
		return nil
	}
	sn := &acmeSnapshot{Account: a.account, Cert: a.cert}
	for _, k := range slices.Sorted(maps.Keys(a.challenges)) {
		sn.Challenges = append(sn.Challenges, a.challenges[k])
	}
	return sn
}

func (sn *acmeSnapshot) thaw() acmeState {
	if sn == nil {
		return acmeState{}
	}
	a := acmeState{account: sn.Account, cert: sn.Cert, challenges: map[string]Challenge{}}
	for _, c := range sn.Challenges {
		a.challenges[c.Token] = c
	}
	return a
}

package acmecert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Challenge types.
const (
	HTTP01    = "http-01"
	TLSALPN01 = "tls-alpn-01"
)

// Config is what the manager needs from acme: in the node configuration.
type Config struct {
	Directory string   // ACME directory URL
	Email     string   // account contact (optional)
	Domains   []string // names on the certificate; the first is the common name
	Challenge string   // HTTP01 or TLSALPN01
	// RenewBefore renews when less than this is left; 0: a third of the certificate's lifetime.
	RenewBefore time.Duration
	// HTTPClient talks to the CA (nil: http.DefaultClient). Tests trust their CA with it.
	HTTPClient *http.Client
	// Settle is how long the leader waits after publishing challenges before asking the CA to
	// validate them, so that every node has applied them. 0: one second.
	Settle time.Duration
	// Backoff is the wait after a first failure, doubled after each next one up to an hour.
	// 0: one minute.
	Backoff time.Duration
	NodeID  string
}

// Manager serves the cluster's ACME certificate and, on the leader, obtains and renews it.
type Manager struct {
	cfg   Config
	store state.Store
	log   *slog.Logger

	cur    atomic.Pointer[served] // the certificate every TLS listener serves
	chalMu sync.Mutex
	chals  map[string]*tls.Certificate // TLS-ALPN-01 answers by token

	running sync.Mutex // one order at a time

	// failures counts failed attempts (for backoff and the doctor); lastErr is the last one.
	failures atomic.Int64
	errMu    sync.Mutex
	lastErr  error
	nextTry  time.Time
}

type served struct {
	cert   *tls.Certificate
	serial string
}

// New returns a manager over the store. It follows the state at once: a certificate already
// obtained is served.
func New(cfg Config, store state.Store, log *slog.Logger) *Manager {
	if cfg.Settle == 0 {
		cfg.Settle = time.Second
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Minute
	}
	m := &Manager{cfg: cfg, store: store, log: log.With("component", "acme"), chals: map[string]*tls.Certificate{}}
	store.State().Observe(func(c state.Command) {
		switch c.Type {
		case state.CmdPutCertificate, 0: // 0: a snapshot was restored
			m.load()
		}
	})
	m.load()
	return m
}

// load swaps in the certificate of the state when it changed.
func (m *Manager) load() {
	sc, ok := m.store.State().Certificate()
	if !ok {
		return
	}
	if cur := m.cur.Load(); cur != nil && cur.serial == sc.Serial {
		return
	}
	cert, err := tls.X509KeyPair(sc.CertPEM, sc.KeyPEM)
	if err != nil {
		m.log.Error("stored ACME certificate does not load", "serial", sc.Serial, "error", err)
		return
	}
	m.cur.Store(&served{cert: &cert, serial: sc.Serial})
	m.log.Info("serving ACME certificate", "serial", sc.Serial, "domains", sc.Domains, "not_after", sc.NotAfter)
}

// Serial is the serial number (hex) of the certificate served, "" before one is obtained.
func (m *Manager) Serial() string {
	if cur := m.cur.Load(); cur != nil {
		return cur.serial
	}
	return ""
}

// LastError is the error of the last failed attempt, nil after a success.
func (m *Manager) LastError() error {
	m.errMu.Lock()
	defer m.errMu.Unlock()
	return m.lastErr
}

// GetCertificate is tls.Config.GetCertificate for every TLS listener of the node: the answer to
// a pending TLS-ALPN-01 challenge when the CA asks for acme-tls/1, else the current certificate.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
		return m.alpnCert(hello.ServerName)
	}
	if cur := m.cur.Load(); cur != nil {
		return cur.cert, nil
	}
	return nil, ErrNoCertificate
}

// TLSConfig returns a server configuration that serves the ACME certificate (and answers
// TLS-ALPN-01), offering the application protocols protos.
func (m *Manager) TLSConfig(protos ...string) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: m.GetCertificate,
		NextProtos: append(slices.Clone(protos), acme.ALPNProto)}
}

func (m *Manager) alpnCert(name string) (*tls.Certificate, error) {
	ch, ok := m.store.State().ChallengeFor(TLSALPN01, name)
	if !ok {
		return nil, fmt.Errorf("%w for %q", ErrNoChallenge, name)
	}
	m.chalMu.Lock()
	defer m.chalMu.Unlock()
	if c, ok := m.chals[ch.Token]; ok {
		return c, nil
	}
	c, err := alpnChallengeCert(ch.Domain, ch.KeyAuth)
	if err != nil {
		return nil, err
	}
	if len(m.chals) > 64 { // answers of past challenges
		clear(m.chals)
	}
	m.chals[ch.Token] = c
	return c, nil
}

// alpnChallengeCert is the self-signed certificate of RFC 8737 §3: the domain and a critical
// id-pe-acmeIdentifier extension holding SHA-256 of the key authorization.
func alpnChallengeCert(domain, keyAuth string) (*tls.Certificate, error) {
	sum := sha256.Sum256([]byte(keyAuth))
	ext, err := asn1.Marshal(sum[:])
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: domain}, DNSNames: []string{domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}, Critical: true, Value: ext}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// HTTPHandler answers HTTP-01 challenges (GET /.well-known/acme-challenge/<token>) from the
// replicated state; everything else is 404.
func (m *Manager) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		ch, ok := m.store.State().Challenge(token)
		if !ok || ch.Type != HTTP01 || !hostMatches(r.Host, ch.Domain) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(ch.KeyAuth))
	})
}

func hostMatches(host, domain string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.EqualFold(host, domain)
}

// Due reports whether the certificate in the state must be (re)obtained at now, and why.
func (m *Manager) Due(now time.Time) (bool, string) {
	sc, ok := m.store.State().Certificate()
	if !ok {
		return true, "no certificate"
	}
	if !sameDomains(sc.Domains, m.cfg.Domains) {
		return true, "domains changed"
	}
	before := m.cfg.RenewBefore
	if before <= 0 {
		before = sc.NotAfter.Sub(sc.NotBefore) / 3
	}
	if !now.Before(sc.NotAfter.Add(-before)) {
		return true, "renewal due"
	}
	return false, ""
}

func sameDomains(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Check obtains a certificate when one is due. The leader calls it periodically. A failure is
// retried with a backoff (Config.Backoff doubling to 1 h, from the first Check after it).
func (m *Manager) Check(ctx context.Context) {
	if !m.running.TryLock() {
		return // an order is under way
	}
	defer m.running.Unlock()
	now := time.Now()
	due, why := m.Due(now)
	if !due {
		return
	}
	m.errMu.Lock()
	wait := now.Before(m.nextTry)
	m.errMu.Unlock()
	if wait {
		return
	}
	m.log.Info("obtaining certificate", "reason", why, "domains", m.cfg.Domains, "challenge", m.cfg.Challenge)
	err := m.Obtain(ctx)
	m.errMu.Lock()
	defer m.errMu.Unlock()
	m.lastErr = err
	if err == nil {
		m.failures.Store(0)
		m.nextTry = time.Time{}
		return
	}
	if ctx.Err() != nil {
		return
	}
	f := m.failures.Add(1)
	backoff := min(m.cfg.Backoff<<min(f-1, 6), time.Hour)
	m.nextTry = time.Now().Add(backoff)
	m.log.Warn("obtaining certificate failed", "error", err, "retry_in", backoff)
}

// Obtain runs one ACME order for the configured domains and stores the certificate.
func (m *Manager) Obtain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	client, err := m.client(ctx)
	if err != nil {
		return err
	}
	order, err := client.AuthorizeOrder(ctx, acme.DomainIDs(m.cfg.Domains...))
	if err != nil {
		return fmt.Errorf("acme: new order: %w", err)
	}
	var tokens []string
	defer func() {
		for _, t := range tokens {
			// Best effort: a stale challenge only answers a CA that no longer asks.
			_ = m.store.Propose(context.WithoutCancel(ctx), state.DeleteChallenge(t))
		}
	}()
	accept, err := m.publishChallenges(ctx, client, order, &tokens)
	if err != nil {
		return err
	}
	if err := m.authorize(ctx, client, order, accept); err != nil {
		return err
	}
	sc, err := m.finalize(ctx, client, order)
	if err != nil {
		return err
	}
	if err := m.store.Propose(ctx, state.PutCertificate(sc)); err != nil {
		return fmt.Errorf("acme: store certificate: %w", err)
	}
	m.log.Info("certificate obtained", "serial", sc.Serial, "not_after", sc.NotAfter)
	return nil
}

// publishChallenges puts in the state, for every authorization of order not yet valid, the
// configured challenge with its key authorization (so that every node answers it), and
// returns those challenges. tokens gets each published token, for the caller to delete.
func (m *Manager) publishChallenges(ctx context.Context, client *acme.Client, order *acme.Order, tokens *[]string) ([]*acme.Challenge, error) {
	var accept []*acme.Challenge
	for _, u := range order.AuthzURLs {
		z, err := client.GetAuthorization(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("acme: authorization: %w", err)
		}
		if z.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, c := range z.Challenges {
			if c.Type == m.cfg.Challenge {
				chal = c
			}
		}
		if chal == nil {
			return nil, fmt.Errorf("%w: %s for %s", ErrChallengeType, m.cfg.Challenge, z.Identifier.Value)
		}
		ka, err := client.HTTP01ChallengeResponse(chal.Token) // the key authorization, for both types
		if err != nil {
			return nil, fmt.Errorf("acme: key authorization: %w", err)
		}
		ch := state.Challenge{Type: chal.Type, Domain: z.Identifier.Value, Token: chal.Token, KeyAuth: ka,
			Expires: time.Now().Add(time.Hour)}
		if err := m.store.Propose(ctx, state.PutChallenge(ch)); err != nil {
			return nil, fmt.Errorf("acme: publish challenge: %w", err)
		}
		*tokens = append(*tokens, chal.Token)
		accept = append(accept, chal)
	}
	return accept, nil
}

// authorize lets the published challenges settle on every node, tells the CA to check them and
// waits for the authorizations and the order to be ready.
func (m *Manager) authorize(ctx context.Context, client *acme.Client, order *acme.Order, accept []*acme.Challenge) error {
	if len(accept) > 0 {
		select { // every node applies the challenges before the CA may reach it
		case <-time.After(m.cfg.Settle):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, chal := range accept {
		if _, err := client.Accept(ctx, chal); err != nil {
			return fmt.Errorf("acme: accept %s: %w", chal.Type, err)
		}
	}
	for _, u := range order.AuthzURLs {
		if _, err := client.WaitAuthorization(ctx, u); err != nil {
			return fmt.Errorf("acme: authorization: %w", err)
		}
	}
	if _, err := client.WaitOrder(ctx, order.URI); err != nil {
		return fmt.Errorf("acme: order: %w", err)
	}
	return nil
}

// finalize sends a CSR for a fresh key and returns the issued certificate as stored.
func (m *Manager) finalize(ctx context.Context, client *acme.Client, order *acme.Order) (state.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return state.Certificate{}, fmt.Errorf("acme: key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: m.cfg.Domains[0]}, DNSNames: m.cfg.Domains}, key)
	if err != nil {
		return state.Certificate{}, fmt.Errorf("acme: csr: %w", err)
	}
	ders, _, err := client.CreateCertFromOrder(ctx, order, csr, true) // with the order URL to wait on
	if err != nil {
		return state.Certificate{}, fmt.Errorf("acme: finalize: %w", err)
	}
	return storedCert(ders, key, m.cfg.Domains, m.cfg.NodeID)
}

func storedCert(ders [][]byte, key crypto.Signer, domains []string, node string) (state.Certificate, error) {
	if len(ders) == 0 {
		return state.Certificate{}, fmt.Errorf("%w: the CA returned no certificate", ErrBadCertificate)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return state.Certificate{}, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	var certPEM []byte
	for _, d := range ders {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return state.Certificate{}, err
	}
	return state.Certificate{Domains: slices.Clone(domains), CertPEM: certPEM,
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
		Serial: hex.EncodeToString(leaf.SerialNumber.Bytes()), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Issued: time.Now().UTC(), Node: node}, nil
}

// client returns an ACME client with the cluster's account, registering one if needed.
func (m *Manager) client(ctx context.Context) (*acme.Client, error) {
	acct, ok := m.store.State().ACMEAccount()
	if ok && acct.Directory == m.cfg.Directory {
		key, err := parseKey(acct.KeyPEM)
		if err != nil {
			return nil, err
		}
		c := &acme.Client{Key: key, DirectoryURL: m.cfg.Directory, HTTPClient: m.cfg.HTTPClient}
		if _, err := c.GetReg(ctx, ""); err == nil {
			return c, nil
		} // the CA forgot the account (a test CA restarted): register the key again
		return m.register(ctx, c, acct.KeyPEM)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c := &acme.Client{Key: key, DirectoryURL: m.cfg.Directory, HTTPClient: m.cfg.HTTPClient}
	return m.register(ctx, c, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

func (m *Manager) register(ctx context.Context, c *acme.Client, keyPEM []byte) (*acme.Client, error) {
	a := &acme.Account{}
	if m.cfg.Email != "" {
		a.Contact = []string{"mailto:" + m.cfg.Email}
	}
	reg, err := c.Register(ctx, a, acme.AcceptTOS)
	if err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("acme: register account: %w", err)
	}
	acct := state.ACMEAccount{Directory: m.cfg.Directory, KeyPEM: keyPEM}
	if reg != nil {
		acct.URL = reg.URI
	}
	if err := m.store.Propose(ctx, state.PutACMEAccount(acct)); err != nil {
		return nil, fmt.Errorf("acme: store account: %w", err)
	}
	return c, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: account key is not PEM", ErrBadCertificate)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: account key: %v", ErrBadCertificate, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: account key is not a signer", ErrBadCertificate)
	}
	return s, nil
}

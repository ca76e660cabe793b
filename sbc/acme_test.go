package sbc

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// pebbleCA is Let's Encrypt's test ACME server, in process, on 127.0.0.1. Its directory URL is
// known before it is configured (the nodes must start first so that their challenge ports are
// known); until then it answers 503.
type pebbleCA struct {
	srv    *httptest.Server
	caFile string // PEM of the directory's HTTPS certificate (acme.ca)
	h      atomic.Pointer[http.Handler]
	ca     *ca.CAImpl
	dns    string // resolver that answers 127.0.0.1 for every name
}

func startPebble(t *testing.T) *pebbleCA {
	t.Helper()
	p := &pebbleCA{}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := p.h.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "not configured yet", http.StatusServiceUnavailable)
	}))
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(t.TempDir(), "pebble-https.pem")
	der := p.srv.Certificate().Raw
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	// The validation authority resolves the names on the certificate through this server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ds := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA,
				Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 0, 0, 1)})
		}
		_ = w.WriteMsg(m)
	})}
	go ds.ActivateAndServe()
	t.Cleanup(func() { _ = ds.Shutdown() })
	p.dns = ln.Addr().String()
	return p
}

// directory is the ACME directory URL.
func (p *pebbleCA) directory() string { return p.srv.URL + wfe.DirectoryPath }

// configure starts the CA proper: validations go to httpPort (http-01) and tlsPort
// (tls-alpn-01) on 127.0.0.1, and certificates live validity seconds.
func (p *pebbleCA) configure(t *testing.T, httpPort, tlsPort int, validity uint64) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	logger := log.New(io.Discard, "pebble ", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	store := db.NewMemoryStore()
	p.ca = ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "short-lived for tests", ValidityPeriod: validity}})
	v := va.New(logger, httpPort, tlsPort, false, p.dns, store)
	w := wfe.New(logger, store, v, p.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := w.Handler()
	p.h.Store(&h)
}

// roots trusts the CA's issuing root.
func (p *pebbleCA) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.GetRootCert(0).Cert)
	return pool
}

// servedSerial dials addr with TLS as a SIP peer would, verifies the certificate for name
// against the CA's root, and returns its serial (hex); "" with the error when that fails.
func servedSerial(addr, name string, roots *x509.CertPool) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return hex.EncodeToString(c.ConnectionState().PeerCertificates[0].SerialNumber.Bytes()), nil
}

func port(t *testing.T, addr string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}

const acmeDomain = "sip.video.test"

// TestACMEClusterTLSALPN: three nodes with a SIP TLS listener and acme: against Pebble. The
// leader (edge1) orders the certificate; Pebble validates tls-alpn-01 on edge3's SIP TLS
// listener (a follower: it answers from the challenge in the replicated state). Every node's
// SIP TLS listener and admin API then serve the same certificate, which verifies against
// Pebble's root; with 30 s certificates and the default renewal at a third of the lifetime, a
// second certificate replaces it on every node without a restart.
func TestACMEClusterTLSALPN(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node ACME test skipped in -short mode")
	}
	p := startPebble(t)
	conf := func(t *testing.T) config.Config {
		cfg := haConfig(t)
		cfg.SIP.Listen = append(cfg.SIP.Listen, config.Listen{Transport: "tls", Addr: netip.MustParseAddrPort("127.0.0.1:0")})
		cfg.ACME = config.ACME{Directory: p.directory(), Email: "ops@video.test", Domains: []string{acmeDomain},
			Challenge: "tls-alpn-01", ChallengeListen: "off", CA: p.caFile, Admin: true}
		return cfg
	}
	fast := func(n *Node) { n.acmeCheckEvery, n.acmeBackoff = 300*time.Millisecond, 300*time.Millisecond }
	cfg1 := conf(t)
	cfg1.Node.ID = "edge1"
	n1 := startNode(t, cfg1, fast)
	token, err := n1.cluster.JoinToken(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*Node{n1}
	for _, id := range []string{"edge2", "edge3"} {
		cfg := conf(t)
		cfg.Node.ID = id
		cfg.Cluster.Join = []string{n1.cluster.Addr()}
		cfg.Cluster.JoinToken = token
		nodes = append(nodes, startNode(t, cfg, fast))
	}
	if !n1.cluster.IsLeader() {
		t.Fatal("edge1 is not the leader")
	}
	const lifetime = 30 // seconds
	p.configure(t, 0, port(t, nodes[2].addr(t, "tls")), lifetime)
	roots := p.roots()
	start := time.Now()

	// Obtained, and served on every node's SIP TLS listener and admin API.
	var first string
	waitUntil(t, 60*time.Second, "the certificate on every node", func() bool {
		s, err := servedSerial(n1.addr(t, "tls"), acmeDomain, roots)
		if err != nil {
			return false
		}
		for _, n := range nodes {
			for _, addr := range []string{n.addr(t, "tls"), n.admin.Addr().String()} {
				if got, err := servedSerial(addr, acmeDomain, roots); err != nil || got != s {
					return false
				}
			}
		}
		first = s
		return true
	})
	sc, ok := n1.Store().State().Certificate()
	if !ok || sc.Serial != first || sc.Node != "edge1" {
		t.Fatalf("state certificate %q from %q, served %q", sc.Serial, sc.Node, first)
	}
	t.Logf("certificate %s obtained by %s and served by 3 nodes after %v (valid %v)", first, sc.Node,
		time.Since(start).Round(time.Millisecond), sc.NotAfter.Sub(sc.NotBefore).Round(time.Second))

	// Renewed at a third of its lifetime, and the new one served everywhere.
	var second string
	waitUntil(t, 2*lifetime*time.Second, "a renewed certificate on every node", func() bool {
		s, err := servedSerial(nodes[2].addr(t, "tls"), acmeDomain, roots)
		if err != nil || s == first {
			return false
		}
		for _, n := range nodes {
			for _, addr := range []string{n.addr(t, "tls"), n.admin.Addr().String()} {
				if got, err := servedSerial(addr, acmeDomain, roots); err != nil || got != s {
					return false
				}
			}
		}
		second = s
		return true
	})
	sc2, _ := n1.Store().State().Certificate()
	if renewedAt := sc2.Issued.Sub(sc.NotBefore); renewedAt < time.Duration(lifetime)*time.Second/2 {
		t.Fatalf("renewed %v into a %ds certificate: before two thirds of its life", renewedAt, lifetime)
	}
	t.Logf("renewed: %s -> %s, %v after the first was issued", first, second, sc2.Issued.Sub(sc.NotBefore).Round(time.Millisecond))
	if _, ok := n1.Store().State().ChallengeFor("tls-alpn-01", acmeDomain); ok {
		t.Fatal("a challenge is left in the state after the orders")
	}
}

// TestACMEHTTP01: a single node answers http-01 on its challenge listener; the certificate
// is served on the SIP TLS listener, which served the configured sip.tls certificate until then.
func TestACMEHTTP01(t *testing.T) {
	p := startPebble(t)
	cfg := testConfig(t)
	cfg.SIP.TLS.Cert, cfg.SIP.TLS.Key = selfSigned(t, t.TempDir())
	cfg.SIP.Listen = append(cfg.SIP.Listen, config.Listen{Transport: "tls", Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	cfg.ACME = config.ACME{Directory: p.directory(), Domains: []string{acmeDomain}, Challenge: "http-01",
		ChallengeListen: "127.0.0.1:0", CA: p.caFile}
	n := startNode(t, cfg, func(n *Node) { n.acmeCheckEvery, n.acmeBackoff = 300*time.Millisecond, 300*time.Millisecond })
	// Before: the configured certificate.
	c, err := tls.Dial("tcp", n.addr(t, "tls"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "portcullis test" {
		t.Fatalf("before ACME: served %q", cn)
	}
	c.Close()
	p.configure(t, port(t, n.ACMEAddr()), 0, 3600)
	roots := p.roots()
	waitUntil(t, 60*time.Second, "the ACME certificate on the SIP TLS listener", func() bool {
		s, err := servedSerial(n.addr(t, "tls"), acmeDomain, roots)
		sc, _ := n.Store().State().Certificate()
		return err == nil && s == sc.Serial
	})
	// portcullis doctor's report names the ACME certificate and its expiry.
	sc, _ := n.Store().State().Certificate()
	rep := n.doctorReport()
	if len(rep.Certificates) != 1 || rep.Certificates[0].Source != "acme" || rep.Certificates[0].Serial != sc.Serial ||
		!rep.Certificates[0].NotAfter.Equal(sc.NotAfter) || rep.Certificates[0].Error != "" {
		t.Fatalf("doctor report certificates %+v, state serial %s", rep.Certificates, sc.Serial)
	}
}

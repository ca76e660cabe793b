package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ALPN protocols: members speak alpnMember (mutual TLS); a node that has no certificate yet
// speaks alpnJoin to obtain one with a join token (server-authenticated only, CA pinned).
const (
	alpnMember = "portcullis-cluster/1"
	alpnJoin   = "portcullis-join/1"
	// clusterName is a DNS name in every generated node certificate.
	clusterName = "portcullis-cluster"
	certLife    = 10 * 365 * 24 * time.Hour
)

// Files in DataDir/tls.
const (
	tlsDir     = "tls"
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key" // only on the node that ran Init: it signs join requests
	certFile   = "node.crt"
	keyFile    = "node.key"
	tokensFile = "join-tokens.json"
	infoFile   = "node.json"
)

func tlsPath(dataDir, name string) string { return filepath.Join(dataDir, tlsDir, name) }

// tlsMaterial is what a member needs for mutual TLS.
type tlsMaterial struct {
	ca     *x509.Certificate
	pool   *x509.CertPool
	cert   tls.Certificate // leaf followed by the CA, so joiners can pin the CA
	caKey  *ecdsa.PrivateKey
	fprint string // hex SHA-256 of the CA certificate (DER)
}

// Fingerprint returns the hex SHA-256 of a certificate's DER bytes.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// Init creates a cluster CA (ECDSA P-256) and this node's certificate in dataDir/tls. It fails
// with ErrExists if a CA certificate is already there. Open calls it by itself when a node
// bootstraps with no certificates, so a single node needs no operator action.
func Init(dataDir, nodeID, advertise string) error {
	if nodeID == "" || advertise == "" {
		return errf(ErrConfig, "init needs a node id and an advertise address")
	}
	if _, err := os.Stat(tlsPath(dataDir, caCertFile)); err == nil {
		return errf(ErrExists, "%s", tlsPath(dataDir, caCertFile))
	}
	if err := os.MkdirAll(filepath.Join(dataDir, tlsDir), 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrTLS, err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Portcullis cluster CA " + nodeID, Organization: []string{"Portcullis"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLife),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := issue(ca, caKey, &key.PublicKey, nodeID, advertise)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return err
	}
	if err := checkInfo(dataDir, nodeID, advertise); err != nil {
		return err
	}
	// Write the CA certificate last: its presence marks a complete Init.
	for _, f := range []struct {
		name, typ string
		der       []byte
		mode      fs.FileMode
	}{
		{caKeyFile, "EC PRIVATE KEY", caKeyDER, 0o600},
		{keyFile, "EC PRIVATE KEY", keyDER, 0o600},
		{certFile, "CERTIFICATE", der, 0o644},
		{caCertFile, "CERTIFICATE", caDER, 0o644},
	} {
		if err := writePEM(tlsPath(dataDir, f.name), f.typ, f.der, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// issue signs a node certificate for pub: CN and a DNS name of nodeID, the advertise host, and
// the cluster name, usable as TLS server and client.
func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, pub any, nodeID, advertise string) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"Portcullis"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{clusterName},
	}
	if validDNS(nodeID) {
		tmpl.DNSNames = append(tmpl.DNSNames, nodeID)
	}
	if host, _, err := net.SplitHostPort(advertise); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if validDNS(host) && host != nodeID {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
}

func validDNS(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return !strings.HasPrefix(s, "-") && !strings.HasPrefix(s, ".")
}

func writePEM(path, typ string, der []byte, mode fs.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	return writeFileAtomic(path, b, mode)
}

func writeFileAtomic(path string, b []byte, mode fs.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("%w: %v", ErrTLS, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: %v", ErrTLS, err)
	}
	return nil
}

// haveTLS reports whether dataDir holds a CA certificate and a node certificate and key.
func haveTLS(dataDir string) bool {
	for _, f := range []string{caCertFile, certFile, keyFile} {
		if _, err := os.Stat(tlsPath(dataDir, f)); err != nil {
			return false
		}
	}
	return true
}

// loadTLS reads the CA, certificate and key (from the config paths, else from DataDir/tls),
// and the CA key when this node holds it.
func loadTLS(cfg *Config) (*tlsMaterial, error) {
	caPath, certPath, keyPath := cfg.CACert, cfg.Cert, cfg.Key
	if caPath == "" {
		caPath, certPath, keyPath = tlsPath(cfg.DataDir, caCertFile), tlsPath(cfg.DataDir, certFile), tlsPath(cfg.DataDir, keyFile)
	}
	ca, err := readCert(caPath)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTLS, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrTLS, certPath, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: %s is not signed by the cluster CA %s: %v", ErrTLS, certPath, caPath, err)
	}
	pair.Leaf = leaf
	if len(pair.Certificate) == 1 {
		pair.Certificate = append(pair.Certificate, ca.Raw)
	}
	m := &tlsMaterial{ca: ca, pool: pool, cert: pair, fprint: Fingerprint(ca)}
	if cfg.CACert == "" {
		if b, err := os.ReadFile(tlsPath(cfg.DataDir, caKeyFile)); err == nil {
			if blk, _ := pem.Decode(b); blk != nil {
				if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
					m.caKey = k
				}
			}
		}
	}
	return m, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTLS, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: no PEM certificate", ErrTLS, path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrTLS, path, err)
	}
	return c, nil
}

// serverConfig accepts members (client certificate required and verified against the CA) and,
// on the join ALPN protocol only, nodes without a certificate.
func (m *tlsMaterial) serverConfig() *tls.Config {
	member := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.pool,
		NextProtos:   []string{alpnMember},
	}
	join := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		ClientAuth:   tls.NoClientCert,
		NextProtos:   []string{alpnJoin},
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			for _, p := range hi.SupportedProtos {
				if p == alpnJoin {
					return join, nil
				}
			}
			return member, nil
		},
	}
}

// clientConfig dials members: our certificate, and the peer's chain checked against the CA.
// Host names are not checked: any certificate of the cluster CA is a member (the CA must be
// dedicated to the cluster).
func (m *tlsMaterial) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{m.cert},
		NextProtos:         []string{alpnMember},
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, m.pool)
		},
	}
}

func verifyChain(certs []*x509.Certificate, roots *x509.CertPool) error {
	if len(certs) == 0 {
		return errors.New("cluster: peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// joinClientConfig dials the CA holder before this node has a certificate: the server's chain
// must lead to a CA whose SHA-256 fingerprint is the one in the join token.
func joinClientConfig(fprint string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{alpnJoin},
		InsecureSkipVerify: true, // replaced by the pinned check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, c := range cs.PeerCertificates {
				if c.IsCA && strings.EqualFold(Fingerprint(c), fprint) {
					pool := x509.NewCertPool()
					pool.AddCert(c)
					return verifyChain(cs.PeerCertificates, pool)
				}
			}
			return fmt.Errorf("%w: server does not present the CA pinned by the join token", ErrTLS)
		},
	}
}

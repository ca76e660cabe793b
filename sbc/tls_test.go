package sbc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portcullis test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"video.test"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestTLSListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.SIP.TLS.Cert, cfg.SIP.TLS.Key = selfSigned(t, t.TempDir())
	cfg.SIP.Listen = append(cfg.SIP.Listen, config.Listen{Transport: "tls", Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	n := startNode(t, cfg)
	addr := n.addr(t, "tls")

	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake accepted")
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := "OPTIONS sip:video.test SIP/2.0\r\nVia: SIP/2.0/TLS " + local + ";branch=z9hG4bK-tls1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@video.test>;tag=1\r\nTo: <sip:video.test>\r\n" +
		"Call-ID: tls1@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	c.Write([]byte(msg))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	nr, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:nr]), "SIP/2.0 200 OK") {
		t.Fatalf("OPTIONS over TLS: %v %q", err, buf[:nr])
	}
}

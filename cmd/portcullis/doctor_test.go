package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// shortCert writes a certificate for sip.video.test valid for another d.
func shortCert(t *testing.T, d time.Duration) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x2a), Subject: pkix.Name{CommonName: "sip.video.test"},
		DNSNames: []string{"sip.video.test"}, NotBefore: time.Now().Add(-80 * 24 * time.Hour), NotAfter: time.Now().Add(d),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, keyFile
}

// TestDoctorFindsBadSetup runs `portcullis doctor` against a whole running node set up badly:
// media advertised on a documentation address, two rooms that never registered, a SIP TLS
// certificate that expires in two days. Each fault is a line naming it with a fix; what is
// fine (health, listeners dialled, clock, Raft, disk) is OK; the exit status is 1.
func TestDoctorFindsBadSetup(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	cfg := config.Default()
	cfg.Node.ID, cfg.Node.DataDir = "doc1", t.TempDir()
	cfg.SIP.Domain = "video.test"
	cfg.SIP.Listen = []config.Listen{{Transport: "udp", Addr: lo}, {Transport: "tcp", Addr: lo}, {Transport: "tls", Addr: lo}}
	cfg.SIP.TLS.Cert, cfg.SIP.TLS.Key = shortCert(t, 48*time.Hour)
	cfg.Media.Bind = netip.MustParseAddr("127.0.0.1")
	cfg.Media.Advertise = netip.MustParseAddr("192.0.2.10") // documentation: unreachable
	cfg.TURN.Listen = nil
	cfg.Admin.Listen, cfg.Admin.Token = "127.0.0.1:0", "doctor-test-token-0123456789abcdef"
	cfg.Cluster.Bind = "127.0.0.1:0"
	cfg.Rooms = []config.Room{{Name: "boardroom", Password: "s3cret-board", Inbound: "open"},
		{Name: "lobby", Password: "lobby-password", Inbound: "open"}}
	startSBC(t, cfg)

	out, errOut, code := runT(runDoctor)
	t.Logf("portcullis doctor:\n%s", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a FAIL)\nstderr: %s", code, errOut)
	}
	for _, want := range []string{
		`(?m)^OK    health +node doc1 serves`,
		`(?m)^OK    listener +udp://127\.0\.0\.1:\d+ answers$`,
		`(?m)^OK    listener +tcp://127\.0\.0\.1:\d+ answers$`,
		`(?m)^OK    listener +tls://127\.0\.0\.1:\d+ answers$`,
		`(?m)^OK    clock +the node's clock is `,
		`(?m)^OK    sip realm +video\.test \(sip\.domain\)$`,
		`(?m)^FAIL  media address +advertised 192\.0\.2\.10 is a documentation address .*\n +fix: set media\.advertise`,
		`(?m)^WARN  sip address +advertised 127\.0\.0\.1 is loopback`,
		`(?m)^WARN  room +boardroom is not registered\n +fix: on the room system: registrar`,
		`(?m)^WARN  room +lobby is not registered`,
		`(?m)^OK    raft +leader doc1, 1 of 1 members healthy`,
		`(?m)^FAIL  cert sip-tls +file certificate 2a for sip\.video\.test expires \d{4}-\d\d-\d\d \((47|48)h0m0s left\)\n +fix: `,
		`(?m)^OK    disk +.* MiB free of \d+ MiB$`,
		`(?m)^2 FAIL, 3 WARN$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %s", want)
		}
	}
}

// TestDoctorNoNode: with nothing listening the API line fails, the exit status is 1, and the
// listeners from the config are dialled and reported.
func TestDoctorNoNode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "portcullis.yaml")
	body := "node:\n  data_dir: " + dir + "\nsip:\n  domain: video.test\n  listen: [tcp://127.0.0.1:1]\n" +
		"admin:\n  listen: 127.0.0.1:1\n  token: doctor-test-token-0123456789abcdef\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORTCULLIS_API", "")
	t.Setenv("PORTCULLIS_TOKEN", "")
	out, _, code := runT(runDoctor, "--config", p)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		`(?m)^FAIL  api +cannot reach the admin API at http://127\.0\.0\.1:1`,
		`(?m)^FAIL  listener +tcp://127\.0\.0\.1:1: .*refused`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %s\n%s", want, out)
		}
	}
}

func TestDoctorAPIURL(t *testing.T) {
	for _, tt := range []struct {
		listen string
		tls    bool
		want   string
	}{
		{"127.0.0.1:8443", false, "http://127.0.0.1:8443"},
		{"0.0.0.0:8443", true, "https://127.0.0.1:8443"},
		{"[::1]:9000", false, "http://[::1]:9000"},
	} {
		cfg := config.Default()
		cfg.Admin.Listen = tt.listen
		if tt.tls {
			cfg.Admin.TLS.Cert = "x.pem"
		}
		if got := apiURL(cfg); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.listen, got, tt.want)
		}
	}
}

package sbc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/acmecert"
)

// defaultACMECheck is how often the leader looks whether the certificate is due.
const defaultACMECheck = time.Minute

// startACME builds the certificate manager (when acme: is configured) and binds its challenge
// listener. The manager serves the certificate already in the state at once.
func (n *Node) startACME() error {
	a := n.cfg.ACME
	if !a.Enabled() {
		return nil
	}
	hc := http.DefaultClient
	if a.CA != "" {
		pemBytes, err := os.ReadFile(a.CA)
		if err != nil {
			return fmt.Errorf("acme: ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("acme: ca: no certificate in %s", a.CA)
		}
		hc = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	n.acme = acmecert.New(acmecert.Config{Directory: a.Directory, Email: a.Email, Domains: a.Domains,
		Challenge: a.Challenge, RenewBefore: a.RenewBefore.D(), HTTPClient: hc, NodeID: n.cfg.Node.ID, Backoff: n.acmeBackoff}, n.store, n.log)
	addr := a.ChallengeAddr()
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("acme: challenge listener %s: %w", addr, err)
	}
	// Handshake and request errors are a peer's doing: through the rate-limited logger, at Debug.
	srv := &http.Server{Handler: n.acme.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(n.log.With("component", "acme-challenge").Handler(), slog.LevelDebug)}
	n.acmeAddr = boundAddr(ln.Addr())
	n.closers = append(n.closers, srv)
	if a.Challenge == acmecert.TLSALPN01 {
		ln = tls.NewListener(ln, n.acme.TLSConfig("http/1.1"))
	}
	n.serves = append(n.serves, func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

// runACME makes the leader obtain and renew the certificate.
func (n *Node) runACME(ctx context.Context) {
	if n.acme == nil {
		return
	}
	every := n.acmeCheckEvery
	if every <= 0 {
		every = defaultACMECheck
	}
	if n.cluster != nil {
		// The first check runs at once on a new leader (RunLeaderTask ticks after every).
		n.cluster.RunLeaderTask(ctx, every, n.acme.Check)
		n.goBackground(func() {
			if n.cluster.IsLeader() {
				n.acme.Check(ctx)
			}
		})
		return
	}
	n.goBackground(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			n.acme.Check(ctx)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	})
}

// sipTLSConfigACME is the SIP TLS listeners' configuration with ACME: the ACME certificate,
// or the configured sip.tls certificate until one is obtained.
func (n *Node) sipTLSConfigACME() (*tls.Config, error) {
	conf := n.acme.TLSConfig()
	if n.cfg.SIP.TLS.Cert == "" {
		return conf, nil
	}
	static, err := tls.LoadX509KeyPair(n.cfg.SIP.TLS.Cert, n.cfg.SIP.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("sip tls: load %s / %s: %w", n.cfg.SIP.TLS.Cert, n.cfg.SIP.TLS.Key, err)
	}
	get := conf.GetCertificate
	conf.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := get(h)
		if errors.Is(err, acmecert.ErrNoCertificate) {
			return &static, nil
		}
		return c, err
	}
	return conf, nil
}

// ACMEAddr is the bound challenge listener (invalid when none).
func (n *Node) ACMEAddr() string {
	if !n.acmeAddr.IsValid() {
		return ""
	}
	return n.acmeAddr.String()
}

package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// ACME obtains and renews the certificate of the SIP TLS listeners (and, with Admin, the admin
// API) from an ACME CA such as Let's Encrypt (RFC 8555). The Raft leader obtains it once for
// the whole cluster; every node serves it and swaps it without a restart when it is renewed.
// The certificate's key and the account key are kept in the replicated state in data_dir.
type ACME struct {
	// Directory is the CA's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory.
	// Default: none (ACME off).
	Directory string `yaml:"directory"`
	// Email is the account's contact address (expiry notices). Default: none.
	Email string `yaml:"email"`
	// Domains are the names on the certificate (DNS names that resolve to the nodes); the first
	// is the common name. Required with directory.
	Domains []string `yaml:"domains"`
	// Challenge is tls-alpn-01 (answered on port 443 and on every TLS listener) or http-01
	// (answered on port 80). Default: tls-alpn-01.
	Challenge string `yaml:"challenge"`
	// ChallengeListen is where the CA's validation connects: an HTTP listener for http-01, a TLS
	// listener for tls-alpn-01. "off" binds none (the SIP TLS listeners still answer
	// tls-alpn-01, e.g. behind a 443 port forward). Default: 0.0.0.0:443 for tls-alpn-01,
	// 0.0.0.0:80 for http-01.
	ChallengeListen string `yaml:"challenge_listen"`
	// RenewBefore renews when less than this is left of the certificate's life. Default: 0,
	// a third of its lifetime (30 days of 90, 16 days of 47).
	RenewBefore Duration `yaml:"renew_before"`
	// CA is a PEM file of CA certificates trusted for the directory's HTTPS, besides the system
	// roots (a private ACME CA). Default: none.
	CA string `yaml:"ca"`
	// Admin serves the admin API over HTTPS with the ACME certificate (admin.tls then is not
	// needed). Default: false.
	Admin bool `yaml:"admin"`
}

// Enabled reports whether ACME is configured.
func (a ACME) Enabled() bool { return a.Directory != "" }

// ChallengeAddr is the effective challenge listener address, "" for none.
func (a ACME) ChallengeAddr() string {
	switch {
	case a.ChallengeListen == "off":
		return ""
	case a.ChallengeListen != "":
		return a.ChallengeListen
	case a.Challenge == "http-01":
		return "0.0.0.0:80"
	default:
		return "0.0.0.0:443"
	}
}

// validateACME checks acme: (after defaults: Challenge is set).
func (c *Config) validateACME(v *validator) {
	a := &c.ACME
	if !a.Enabled() {
		if len(a.Domains) > 0 || a.Email != "" || a.Admin {
			v.fail("acme.directory", "acme is configured without a directory URL")
		}
		return
	}
	if u, err := url.Parse(a.Directory); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.fail("acme.directory", "%q must be an https:// URL", a.Directory)
	}
	if len(a.Domains) == 0 {
		v.fail("acme.domains", "needs at least one domain name")
	}
	for i, d := range a.Domains {
		if d == "" || strings.ContainsAny(d, " @:;/*") || strings.HasSuffix(d, ".") || net.ParseIP(d) != nil {
			v.fail(fmt.Sprintf("acme.domains[%d]", i), "%q must be a DNS name such as sip.example.com", d)
		}
	}
	switch a.Challenge {
	case "tls-alpn-01", "http-01":
	default:
		v.fail("acme.challenge", "%q must be tls-alpn-01 or http-01", a.Challenge)
	}
	if a.ChallengeListen != "" && a.ChallengeListen != "off" {
		if _, _, err := net.SplitHostPort(a.ChallengeListen); err != nil {
			v.fail("acme.challenge_listen", "%q must be HOST:PORT or off", a.ChallengeListen)
		}
	}
	if a.RenewBefore < 0 {
		v.fail("acme.renew_before", "must not be negative")
	}
	if a.CA != "" {
		if _, err := os.Stat(a.CA); err != nil {
			v.fail("acme.ca", "cannot read %q: %v", a.CA, err)
		}
	}
}

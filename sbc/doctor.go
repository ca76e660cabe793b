package sbc

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/admin"
)

// doctorReport is this node's own view for `portcullis doctor` (GET /api/v1/node/doctor).
func (n *Node) doctorReport() admin.NodeReport {
	r := admin.NodeReport{Node: n.cfg.Node.ID, Version: Version, Time: time.Now().UTC(), DataDir: n.cfg.Node.DataDir,
		MediaAdvertise: n.cfg.Media.AdvertiseAddr().String(), Listeners: []string{}, Certificates: []admin.CertReport{},
		Realm: n.cfg.SIP.Domain, RealmSource: n.domainSource}
	r.DiskFree, r.DiskTotal = diskSpace(n.cfg.Node.DataDir)
	tls := false
	for _, b := range n.bound {
		r.Listeners = append(r.Listeners, b.String())
		if r.SIPAdvertise == "" {
			r.SIPAdvertise = n.advertiseHost(b)
		}
		tls = tls || b.Transport == "tls"
	}
	if tls {
		r.Certificates = append(r.Certificates, n.certReport("sip-tls", n.cfg.SIP.TLS.Cert))
	}
	if n.cfg.Admin.TLS.Cert != "" {
		r.Certificates = append(r.Certificates, fileCertReport("admin", n.cfg.Admin.TLS.Cert))
	} else if n.acme != nil && n.cfg.ACME.Admin {
		r.Certificates = append(r.Certificates, n.certReport("admin", ""))
	}
	return r
}

// certReport describes the certificate served for use: the ACME one when acme: is set (the
// file only until one is obtained), else the file.
func (n *Node) certReport(use, file string) admin.CertReport {
	if n.acme == nil {
		return fileCertReport(use, file)
	}
	c := admin.CertReport{Use: use, Source: "acme"}
	if sc, ok := n.store.State().Certificate(); ok {
		c.Serial, c.Domains, c.NotBefore, c.NotAfter = sc.Serial, sc.Domains, sc.NotBefore, sc.NotAfter
	}
	if err := n.acme.LastError(); err != nil {
		c.Error = err.Error()
	} else if c.Serial == "" {
		c.Error = "no certificate obtained yet"
	}
	return c
}

func fileCertReport(use, file string) admin.CertReport {
	c := admin.CertReport{Use: use, Source: "file"}
	b, err := os.ReadFile(file)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		c.Error = "no PEM certificate in " + file
		return c
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	c.Serial, c.Domains = hex.EncodeToString(leaf.SerialNumber.Bytes()), leaf.DNSNames
	c.NotBefore, c.NotAfter = leaf.NotBefore, leaf.NotAfter
	return c
}

package sbc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// The SIP domain and digest realm. Every room's stored HA1 is H(name:realm:password), so the
// realm of a cluster never changes once rooms exist, and every node must use the same one. An
// explicit sip.domain wins. Without one, the node uses the realm recorded in the replicated state
// (state.SetRealm, first write wins), recorded by the first node to start:
//   - sip.domain, when the first node had one (so that removing the key later changes nothing);
//   - config.LegacyDomain when the state already holds rooms: a cluster upgraded from a release
//     whose default domain was portcullis.local, whose rooms' HA1 are in that realm;
//   - sip.advertise when it is a host name or an IPv4 address (the name rooms are given anyway);
//   - else a random token that names nothing (a scanner reading the realm of a challenge learns
//     nothing about the product; an IP address would have leaked a private one).
//
// A node caches the recorded realm in its data dir (realmFile), so that a restart does not wait
// for the cluster before binding; a node starting for the first time without sip.domain waits
// (at most readyWait) until it has caught up with the cluster, as it cannot challenge anyone
// before it knows the realm.

// realmFile is the cache of the cluster's recorded realm, in node.data_dir.
const realmFile = "sip-realm"

// errRealmUnknown: sip.domain is unset and the cluster's realm could not be learnt.
var errRealmUnknown = errors.New("sip.domain is unset and the cluster's recorded realm is not known yet")

// resolveDomain sets n.cfg.SIP.Domain when sip.domain is unset: from the data dir's cache, else
// from the cluster's state once caught up (recording one if none is). It runs before anything
// that uses the domain starts.
func (n *Node) resolveDomain(ctx context.Context) error {
	if n.cfg.SIP.Domain != "" {
		n.domainSource = "sip.domain"
		return nil
	}
	n.domainSource = "recorded in the cluster's state"
	if d, ok := readRealmFile(n.cfg.Node.DataDir); ok {
		n.cfg.SIP.Domain = d
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	if err := n.cluster.WaitReady(wctx); err != nil {
		return fmt.Errorf("%w: %w (set sip.domain, or start the node while the cluster has a leader)", errRealmUnknown, err)
	}
	if err := n.ensureRealm(wctx); err != nil {
		return fmt.Errorf("%w: %w", errRealmUnknown, err)
	}
	d := n.store.State().Realm()
	if !config.ValidDomain(d) {
		return fmt.Errorf("%w: the recorded realm %q is not a valid domain", errRealmUnknown, d)
	}
	n.cfg.SIP.Domain = d
	if err := writeRealmFile(n.cfg.Node.DataDir, d); err != nil {
		n.log.Warn("cannot cache the SIP realm in the data dir (the next start waits for the cluster again)", "error", err)
	}
	return nil
}

// ensureRealm records the cluster's realm if none is yet (a step of becomeReady as well, so that a
// node with sip.domain records it, and a realm lost by an older node's snapshot is put back). It
// warns when the node's domain differs from the recorded one: rooms whose HA1 were computed in
// the other realm cannot log in on this node.
func (n *Node) ensureRealm(ctx context.Context) error {
	st := n.store.State()
	if rec := st.Realm(); rec != "" {
		if n.cfg.SIP.Domain != "" && !strings.EqualFold(rec, n.cfg.SIP.Domain) && !n.realmWarned {
			n.realmWarned = true
			n.log.Warn("sip.domain differs from the realm recorded in the cluster: rooms stored with HA1 in the recorded realm cannot log in here",
				"sip_domain", n.cfg.SIP.Domain, "recorded", rec)
		}
		return nil
	}
	d := n.cfg.SIP.Domain
	switch {
	case d != "":
	case st.Counts().Rooms > 0:
		d = config.LegacyDomain
	case advertisable(n.cfg.SIP.Advertise):
		d = n.cfg.SIP.Advertise
	default:
		b := make([]byte, 6)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("realm token: %w", err)
		}
		d = hex.EncodeToString(b)
	}
	if err := n.store.Propose(ctx, state.SetRealm(d)); err != nil {
		return fmt.Errorf("record the SIP realm: %w", err)
	}
	return nil
}

// advertisable reports whether sip.advertise can be the realm: a host name or an IPv4 address
// (an IPv6 address is no host part of sip:ROOM@DOMAIN without brackets).
func advertisable(s string) bool {
	if !config.ValidDomain(s) {
		return false
	}
	a, err := netip.ParseAddr(s)
	return err != nil || a.Is4()
}

func readRealmFile(dataDir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, realmFile))
	if err != nil {
		return "", false
	}
	d := strings.TrimSpace(string(b))
	return d, config.ValidDomain(d)
}

func writeRealmFile(dataDir, realm string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	p := filepath.Join(dataDir, realmFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(realm+"\n"), 0o600); err != nil {
		return fmt.Errorf("realm cache: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("realm cache: %w", err)
	}
	return nil
}

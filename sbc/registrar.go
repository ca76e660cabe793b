package sbc

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
	"github.com/portcullis-sbc/portcullis/sbc/registrar"
)

// startRegistrar builds the digest authenticator and the registrar.
func (n *Node) startRegistrar() error {
	secret, err := nonceSecret(n.cfg.Node.DataDir)
	if err != nil {
		return err
	}
	if n.auth, err = digest.New(digest.Config{Realm: n.cfg.SIP.Domain, Secret: secret,
		NonceTTL: n.cfg.Registrar.NonceTTL.D(), Algorithms: n.cfg.Registrar.Algorithms, Now: n.clock}); err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	r := n.cfg.Registrar
	n.reg, err = registrar.New(registrar.Config{
		Domain: n.cfg.SIP.Domain, NodeID: n.cfg.Node.ID, Trunk: n.trunkAddr(), Host: n.selfHost(),
		MinExpires: r.MinExpires.D(), MaxExpires: r.MaxExpires.D(), DefaultExpires: r.DefaultExpires.D(),
		KeepaliveInterval: r.KeepaliveInterval.D(), KeepaliveFailures: r.KeepaliveFailures,
		Grace: r.Grace.D(), MaxContacts: r.MaxContacts, Logger: n.log.With("component", "registrar"),
		ChallengeTimeout: r.ChallengeTimeout.D(), OnFailure: n.registrationFailed, Draining: n.isDraining,
	}, n.store, n.auth, n.client, n.authObserver())
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	return nil
}

// trunkAddr is where the other nodes of a cluster hand this node calls for rooms registered
// here: its first UDP listener, at the advertised host.
func (n *Node) trunkAddr() string {
	b, ok := n.firstBound("udp")
	if !ok {
		return ""
	}
	return net.JoinHostPort(n.advertiseHost(b), strconv.Itoa(int(b.Addr.Port())))
}

// selfHost is the host of this node in the From of its own requests (keepalives): the
// advertised host of its first listener.
func (n *Node) selfHost() string {
	if len(n.bound) == 0 {
		return n.cfg.SIP.Domain
	}
	b, ok := n.firstBound("udp")
	if !ok {
		b = n.bound[0]
	}
	return n.advertiseHost(b)
}

// ensureTrunkKey gives the cluster the key that signs calls handed between nodes, once.
func (n *Node) ensureTrunkKey(ctx context.Context) error {
	if len(n.store.State().TrunkKey()) > 0 {
		return nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if err := n.store.Propose(ctx, state.SetTrunkKey(key)); err != nil {
		return fmt.Errorf("trunk key: %w", err)
	}
	return nil
}

// nonceSecret is the key that signs digest nonces, kept in the data dir so that nonces survive a
// restart. (Nodes of a cluster each have their own: a challenge is answered to the node that
// issued it, which is where the room's flow goes.)
func nonceSecret(dataDir string) ([]byte, error) {
	p := filepath.Join(dataDir, "digest.secret")
	if b, err := os.ReadFile(p); err == nil && len(b) >= 32 {
		return b, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("nonce secret: %w", err)
	}
	return b, nil
}

// authObserver is told about every digest outcome (the guard counts failures for brute-force bans).
func (n *Node) authObserver() registrar.AuthObserver {
	return registerMetrics{n}
}

// registerMetrics counts REGISTER outcomes and passes them on to the guard.
type registerMetrics struct{ n *Node }

func (r registerMetrics) AuthFailed(src netip.AddrPort, user, transport string) {
	r.n.metrics.RegisterResult("bad_credentials")
	if r.n.guard != nil {
		r.n.guard.AuthFailed(src, user, transport)
	}
}

// RoomLocked asks the guard whether room's digest is locked for src (registrar.RoomLocker).
func (r registerMetrics) RoomLocked(room string, src netip.AddrPort, transport string) bool {
	if r.n.guard == nil {
		return false
	}
	if r.n.guard.RoomLocked(room, src, transport) {
		r.n.metrics.RegisterResult("room_locked")
		return true
	}
	return false
}

func (r registerMetrics) AuthSucceeded(src netip.AddrPort, user string) {
	r.n.metrics.RegisterResult("ok")
	if r.n.guard != nil {
		r.n.guard.AuthSucceeded(src, user)
	}
}

// registrationFailed makes a room's failed registration visible: a guard event (ctl events,
// rule registration-failed) and portcullis_registration_failures_total{reason}.
func (n *Node) registrationFailed(f registrar.Failure) {
	n.metrics.RegistrationFailed(string(f.Reason))
	if n.guard != nil {
		n.guard.RegistrationFailed(f.Source, f.Transport, f.Room, f.UserAgent, f.Code, string(f.Reason)+": "+f.Detail)
	}
}

package sbc

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/turn"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// startMedia creates the relay (port pool, sessions) and, when configured, the TURN server on the
// same pool.
func (n *Node) startMedia() error {
	m := n.cfg.Media
	adv := m.AdvertiseAddr() // SDP and TURN relay address alike, defaulted as documented
	mm, err := media.NewManager(media.Config{
		BindAddr: m.Bind, Advertise: adv, Advertise6: m.Advertise6, PortMin: m.Ports.Min, PortMax: m.Ports.Max,
		Drain: m.Drain.D(), LatchWindow: m.LatchWindow.D(), Timeout: m.Timeout.D(), HoldTimeout: m.HoldTimeout.D(),
		KeepICE: !m.StripICEOn(), Logger: n.log.With("component", "media"),
		MaxStreams: m.MaxStreams, MaxUnansweredPorts: m.MaxUnansweredPorts, Exempt: n.mediaExempt,
		AllowPeers: m.AllowPeers, OwnAddrs: n.own, FastPath: m.FastPathOn(),
	})
	if err != nil {
		return fmt.Errorf("media: %w", err)
	}
	n.media = mm
	n.closers = append(n.closers, mm)
	if len(n.cfg.TURN.Listen) == 0 {
		return nil
	}
	t := n.cfg.TURN
	realm := t.Realm
	if realm == "" {
		realm = n.cfg.SIP.Domain
	}
	secret := t.Secret
	if secret == "" {
		if secret, err = turnSecret(n.cfg.Node.DataDir); err != nil {
			return fmt.Errorf("turn: %w", err)
		}
	}
	tc := turn.Config{
		Realm: realm, RelayAddress: adv, Pool: mm.Pool(), RESTSecret: secret, QuotaPerUser: t.Quota,
		AllowPeers: t.AllowPeers, UnauthRate: t.UnauthRate, UnauthBurst: t.UnauthBurst,
		Gate: &n.turnGate, Logger: n.log.With("component", "turn"),
	}
	if t.SIPCredentials && realm == n.cfg.SIP.Domain {
		// Legacy: rooms' SIP credentials are TURN credentials (the stored HA1 is the TURN key).
		// Failures count toward the guard's bans and room locks like SIP's; a locked room's
		// key is refused except from the address of one of its registered flows.
		tc.Credentials = func(user string, src netip.AddrPort) ([]byte, bool) {
			r, ok := n.store.State().Room(user)
			if !ok || r.HA1MD5 == "" || n.turnGate.roomLocked(user, src) {
				return nil, false
			}
			key, err := turn.KeyFromHA1(r.HA1MD5)
			return key, err == nil
		}
	}
	for _, l := range t.Listen {
		switch l.Transport {
		case "udp":
			tc.Listen = l.Addr.String()
		case "tcp":
			tc.ListenTCP = l.Addr.String()
		case "tls":
			cert, err := tls.LoadX509KeyPair(t.TLS.Cert, t.TLS.Key)
			if err != nil {
				return fmt.Errorf("turn tls: %w", err)
			}
			tc.ListenTLS = l.Addr.String()
			tc.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
	}
	ts, err := turn.NewServer(tc)
	if err != nil {
		return fmt.Errorf("turn: %w", err)
	}
	n.turn = ts
	n.closers = append(n.closers, ts)
	return nil
}

// mediaExempt reports whether calls from src may hold relay ports beyond
// media.max_unanswered_ports: another node of the cluster (it hands over the calls of many
// callers) or an allow-listed source.
func (n *Node) mediaExempt(src netip.Addr) bool {
	return n.peers.has(src) || (n.guard != nil && n.guard.Exempt(src))
}

// mediaRefused tells the guard about a call the media relay refused (rule media-ports).
func (n *Node) mediaRefused(src netip.AddrPort, transport string, code int, err error) {
	if n.guard != nil {
		n.guard.MediaRefused(src, strings.ToUpper(transport), code, err.Error())
	}
}

// turnSecret is the TURN REST shared secret used when turn.secret is not configured: random,
// generated once in the data dir (turn.secret, mode 0600) and kept across restarts, so that
// whatever hands out TURN credentials can share it.
func turnSecret(dataDir string) (string, error) {
	p := filepath.Join(dataDir, "turn.secret")
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	s := hex.EncodeToString(b)
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("turn secret: %w", err)
	}
	return s, nil
}

// turnGate is the guard as the TURN server sees it (turn.Gate). The TURN server starts before
// the guard and serves at once, so the guard is swapped in atomically; until then nothing is
// banned or counted.
type turnGate struct{ g atomic.Pointer[guard.Guard] }

func (t *turnGate) Banned(src netip.AddrPort) bool {
	g := t.g.Load()
	return g != nil && g.Banned(src)
}

func (t *turnGate) AuthFailed(src netip.AddrPort, user, transport string) {
	if g := t.g.Load(); g != nil {
		g.AuthFailed(src, user, transport)
	}
}

func (t *turnGate) AuthSucceeded(src netip.AddrPort, user string) {
	if g := t.g.Load(); g != nil {
		g.AuthSucceeded(src, user)
	}
}

// roomLocked reports whether room's digest is locked for a TURN client at src: TURN's socket is
// not the room's SIP flow, so the flow's address (any port) is exempt.
func (t *turnGate) roomLocked(room string, src netip.AddrPort) bool {
	g := t.g.Load()
	return g != nil && g.IsRoomLocked(room, netip.AddrPortFrom(src.Addr(), 0))
}

package sbc

import (
	"crypto/tls"
	"fmt"

	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/turn"
)

// startMedia creates the relay (port pool, sessions) and, when configured, the TURN server on the
// same pool.
func (n *Node) startMedia() error {
	m := n.cfg.Media
	adv := m.AdvertiseAddr() // SDP and TURN relay address alike, defaulted as documented
	mm, err := media.NewManager(media.Config{
		BindAddr: m.Bind, Advertise: adv, PortMin: m.Ports.Min, PortMax: m.Ports.Max,
		Drain: m.Drain.D(), LatchWindow: m.LatchWindow.D(), Timeout: m.Timeout.D(), HoldTimeout: m.HoldTimeout.D(),
		KeepICE: !m.StripICEOn(), Logger: n.log.With("component", "media"),
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
	tc := turn.Config{
		Realm: realm, RelayAddress: adv, Pool: mm.Pool(), RESTSecret: t.Secret, QuotaPerUser: t.Quota,
		AllowPeers: t.AllowPeers, Logger: n.log.With("component", "turn"),
	}
	if realm == n.cfg.SIP.Domain {
		// Rooms' SIP credentials are TURN credentials: the stored HA1 (MD5) is the TURN key.
		tc.Credentials = func(user string) ([]byte, bool) {
			r, ok := n.store.State().Room(user)
			if !ok || r.HA1MD5 == "" {
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

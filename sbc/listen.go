package sbc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/edge"
)

// sipReadBuffer is the receive buffer asked for on SIP UDP sockets.
const sipReadBuffer = 8 << 20

// Bound is a listener after binding: its real address (the port is known even when 0 was asked).
type Bound struct {
	Transport string         // udp, tcp or tls
	Addr      netip.AddrPort // bound address
}

func (b Bound) String() string { return b.Transport + "://" + b.Addr.String() }

// bindSIP opens every configured SIP socket, wrapped by the edge, so that a port in use is an
// error at start. Serving starts later (serveSIP), once every handler's component exists.
func (n *Node) bindSIP(ctx context.Context) error {
	lim := edge.Limits{
		MaxMessageSize:    n.cfg.SIP.MaxMessageSize,
		ReadTimeout:       n.cfg.SIP.ReadTimeout.D(),
		IdleTimeout:       n.cfg.SIP.IdleTimeout.D(),
		MaxConnsPerSource: n.cfg.SIP.MaxConnsPerSource,
		MaxConnsPerPrefix: n.cfg.SIP.MaxConnsPerPrefix,
		MaxConns:          n.cfg.SIP.MaxConns,
	}
	var tlsConf *tls.Config
	for _, l := range n.cfg.SIP.Listen {
		switch l.Transport {
		case "udp":
			pc, err := net.ListenUDP(network("udp", l.Addr), net.UDPAddrFromAddrPort(l.Addr))
			if err != nil {
				return fmt.Errorf("sip listen %s: %w", l, err)
			}
			n.closers = append(n.closers, pc)
			// A large receive buffer rides out scheduling stalls under a flood without dropping
			// legitimate datagrams (the kernel caps it at net.core.rmem_max).
			_ = pc.SetReadBuffer(sipReadBuffer)
			n.bound = append(n.bound, Bound{"udp", boundAddr(pc.LocalAddr())})
			conn := edge.NewPacketConn(pc, n.admit, lim, &n.edgeStats)
			conn.OnNotSIP(n.notSIP)
			conn.SetMeter(n.meterDatagram)
			conn.SetTap(n.tap)
			n.serves = append(n.serves, func() error { return n.srv.ServeUDP(conn) })
		case "tcp", "tls":
			ln, err := net.Listen(network("tcp", l.Addr), l.Addr.String())
			if err != nil {
				return fmt.Errorf("sip listen %s: %w", l, err)
			}
			n.closers = append(n.closers, ln)
			n.bound = append(n.bound, Bound{l.Transport, boundAddr(ln.Addr())})
			if l.Transport == "tls" {
				if tlsConf == nil {
					if tlsConf, err = n.sipTLSConfig(); err != nil {
						return err
					}
				}
				ln = tls.NewListener(ln, tlsConf)
			}
			tr := "TCP"
			if l.Transport == "tls" {
				tr = "TLS"
			}
			el := edge.NewListener(ln, tr, n.admit, lim, &n.edgeStats, n.flowClosed, n.log.With("component", "edge"))
			el.SetMeter(func(src netip.AddrPort) bool { return n.guard == nil || n.guard.StreamMessage(src, tr) })
			el.SetTap(n.tap)
			if tr == "TLS" {
				n.serves = append(n.serves, func() error { return n.srv.ServeTLS(el) })
			} else {
				n.serves = append(n.serves, func() error { return n.srv.ServeTCP(el) })
			}
		}
	}
	return nil
}

func (n *Node) sipTLSConfig() (*tls.Config, error) {
	if n.acme != nil {
		return n.sipTLSConfigACME()
	}
	cert, err := tls.LoadX509KeyPair(n.cfg.SIP.TLS.Cert, n.cfg.SIP.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("sip tls: load %s / %s: %w", n.cfg.SIP.TLS.Cert, n.cfg.SIP.TLS.Key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// serveSIP hands every bound socket to sipgo.
func (n *Node) serveSIP() {
	for _, serve := range n.serves {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := serve(); err != nil && !errors.Is(err, net.ErrClosed) {
				n.log.Error("sip listener stopped", "error", err)
			}
		}()
	}
	n.serves = nil
}

// network pins IPv4 listeners to IPv4 so that 0.0.0.0 stays 0.0.0.0 (not a dual-stack [::]).
func network(base string, a netip.AddrPort) string {
	if a.Addr().Is4() {
		return base + "4"
	}
	return base + "6"
}

func boundAddr(a net.Addr) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// primaryIP is the address peers should use when we listen on 0.0.0.0: the first global unicast
// IPv4 address of an interface that is up, or 127.0.0.1.
func primaryIP() netip.Addr { return config.PrimaryIP() }

// advertiseHost is the host we put in Via/Contact for a listener.
func (n *Node) advertiseHost(b Bound) string {
	if n.cfg.SIP.Advertise != "" {
		return n.cfg.SIP.Advertise
	}
	if b.Addr.Addr().IsUnspecified() {
		return primaryIP().String()
	}
	return b.Addr.Addr().String()
}

// boundOfFamily is the first listener of transport in the family of v6, with its advertised
// host (sip.advertise applies to the first listener's family only: another family's listener
// is advertised as bound).
func (n *Node) boundOfFamily(transport string, v6 bool) (Bound, string, bool) {
	first, _ := n.firstBound(transport)
	for _, b := range n.bound {
		if b.Transport == transport && (b.Addr.Addr().Is6() && !b.Addr.Addr().Is4In6()) == v6 {
			if b == first {
				return b, n.advertiseHost(b), true
			}
			if b.Addr.Addr().IsUnspecified() {
				return Bound{}, "", false // no address of our own to name
			}
			return b, b.Addr.Addr().String(), true
		}
	}
	return Bound{}, "", false
}

// firstBoundHost is the first listener of transport with its advertised host.
func (n *Node) firstBoundHost(transport string) (Bound, string, bool) {
	b, ok := n.firstBound(transport)
	if !ok {
		return Bound{}, "", false
	}
	return b, n.advertiseHost(b), true
}

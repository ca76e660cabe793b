package turn

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pturn "github.com/pion/turn/v3"

	"github.com/portcullis-sbc/portcullis/media/relay"
)

// Defaults.
const (
	DefaultListen = "0.0.0.0:3478"
	DefaultQuota  = 10
)

// Config configures a [Server].
type Config struct {
	// Realm is the TURN realm.
	Realm string
	// Listen is the UDP listen address (default 0.0.0.0:3478).
	Listen string
	// ListenTCP and ListenTLS are optional TCP and TLS listen addresses
	// (TLS needs TLSConfig). TURN over TCP/TLS still relays over UDP.
	ListenTCP, ListenTLS string
	TLSConfig            *tls.Config
	// RelayAddress is the IP returned to clients as their relay address
	// (the node's public media address).
	RelayAddress netip.Addr
	// Pool is the relay port pool shared with RTP; each allocation takes a
	// pair (even port relays, odd port idles) and returns it on close.
	Pool *relay.Pool
	// Credentials returns the long-term key (MD5 of user:realm:password) of
	// a user asking from src; may be nil when only RESTSecret is used.
	Credentials func(user string, src netip.AddrPort) (key []byte, ok bool)
	// RESTSecret enables TURN REST credentials (username "<expiry>:<user>",
	// password base64(HMAC-SHA1(secret, username)), as coturn's
	// use-auth-secret). Empty disables them.
	RESTSecret string
	// QuotaPerUser caps live allocations per user (default 10; <0: no cap).
	QuotaPerUser int
	// MaxAllocations caps live allocations on the node (0: the pool decides).
	MaxAllocations int
	// AllowPeers are peer prefixes allowed despite the default deny list
	// (loopback, RFC 1918, CGNAT, link-local, multicast, ULA, unspecified
	// and the node's own addresses).
	AllowPeers []netip.Prefix
	// OwnAddrs are extra addresses of this node to deny as peers (interface
	// addresses, RelayAddress and the pool's bind address are added).
	OwnAddrs []netip.Addr
	// Gate is the node's brute-force guard: failed authentications are
	// reported to it and the sources it bans are dropped. Optional.
	Gate Gate
	// UnauthRate and UnauthBurst are the token bucket of requests without
	// credentials per source (IPv4 address, IPv6 /64): pion answers them
	// (401, Binding success) with more bytes than they carry. Over it they are
	// dropped and counted. Defaults: DefaultUnauthRate, DefaultUnauthBurst;
	// a negative rate turns the limit off.
	UnauthRate  float64
	UnauthBurst int
	// Logger is the component logger (default: discard).
	Logger *slog.Logger
}

// Stats are allocation counters for metrics.
type Stats struct {
	Live    int64  `json:"allocations_live"`
	Total   uint64 `json:"allocations_total"`
	Refused uint64 `json:"allocations_refused"` // quota or no ports
	// AuthFailures counts requests whose credentials failed: wrong key,
	// unknown user, invalid or expired REST username (checked before pion).
	AuthFailures uint64 `json:"auth_failures"`
	PeersDenied  uint64 `json:"peers_denied"`
	// RateLimited counts requests without credentials dropped over their
	// source's rate; BannedDropped packets and connections of banned sources.
	RateLimited   uint64 `json:"unauth_rate_limited"`
	BannedDropped uint64 `json:"banned_dropped"`
}

// Server is a running TURN server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	pool    *relay.Pool
	relayIP netip.Addr
	peers   *PeerFilter
	srv     *pturn.Server
	udp     *net.UDPConn
	gate    Gate
	limiter *sourceLimiter

	tcpListeners []net.Listener

	mu    sync.Mutex
	users map[string]int
	live  int64

	total, refused, authFailures, peersDenied atomic.Uint64
	rateLimited, bannedDropped                atomic.Uint64
	denyLog                                   atomic.Int64
}

// NewServer starts the listeners.
func NewServer(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	own := append([]netip.Addr{cfg.RelayAddress, cfg.Pool.Bind()}, cfg.OwnAddrs...)
	own = append(own, interfaceAddrs()...)
	s := &Server{cfg: cfg, log: cfg.Logger, pool: cfg.Pool, relayIP: cfg.RelayAddress.Unmap(),
		peers: NewPeerFilter(cfg.AllowPeers, own), users: map[string]int{}, gate: cfg.Gate}
	if cfg.UnauthRate > 0 {
		s.limiter = newSourceLimiter(cfg.UnauthRate, cfg.UnauthBurst)
	}
	sc, err := s.listen()
	if err != nil {
		return nil, err
	}
	srv, err := pturn.NewServer(sc)
	if err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("turn: %w", err)
	}
	s.srv = srv
	lo, hi := cfg.Pool.Range()
	s.log.Info("TURN server listening", "udp", s.udp.LocalAddr(), "tcp", cfg.ListenTCP, "tls", cfg.ListenTLS,
		"realm", cfg.Realm, "relay", cfg.RelayAddress, "relay_ports", fmt.Sprintf("%d-%d (shared with RTP)", lo, hi),
		"quota_per_user", cfg.QuotaPerUser, "rest_auth", cfg.RESTSecret != "", "room_credentials", cfg.Credentials != nil,
		"unauth_rate", cfg.UnauthRate, "unauth_burst", cfg.UnauthBurst, "allow_peers", cfg.AllowPeers)
	return s, nil
}

func (cfg *Config) setDefaults() {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.QuotaPerUser == 0 {
		cfg.QuotaPerUser = DefaultQuota
	}
	if cfg.UnauthRate == 0 {
		cfg.UnauthRate = DefaultUnauthRate
	}
	if cfg.UnauthBurst <= 0 {
		cfg.UnauthBurst = DefaultUnauthBurst
	}
}

func (cfg *Config) validate() error {
	switch {
	case cfg.Realm == "":
		return fmt.Errorf("%w: realm required", ErrBadConfig)
	case cfg.Pool == nil:
		return fmt.Errorf("%w: relay pool required", ErrBadConfig)
	case !cfg.RelayAddress.IsValid() || cfg.RelayAddress.IsUnspecified():
		return fmt.Errorf("%w: relay address required", ErrBadConfig)
	case cfg.Credentials == nil && cfg.RESTSecret == "":
		return fmt.Errorf("%w: no credential source", ErrBadConfig)
	case cfg.ListenTLS != "" && cfg.TLSConfig == nil:
		return fmt.Errorf("%w: TLS listener without TLS config", ErrBadConfig)
	}
	return nil
}

// listen opens the UDP listener and the TCP and TLS ones configured, and returns pion's
// configuration for them. On error nothing stays open.
func (s *Server) listen() (pturn.ServerConfig, error) {
	cfg := s.cfg
	la, err := net.ResolveUDPAddr("udp4", cfg.Listen)
	if err != nil {
		return pturn.ServerConfig{}, fmt.Errorf("turn: listen udp %s: %w", cfg.Listen, err)
	}
	udp, err := net.ListenUDP("udp4", la)
	if err != nil {
		return pturn.ServerConfig{}, fmt.Errorf("turn: listen udp %s: %w", cfg.Listen, err)
	}
	s.udp = udp
	perm := permissionHandler(s.peers, s.onDeny)
	udpGen := &generator{s: s}
	sc := pturn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authHandler(),
		LoggerFactory: pionLogs{s.log},
		PacketConnConfigs: []pturn.PacketConnConfig{{
			PacketConn: &gateConn{UDPConn: udp, in: inspector{s: s, transport: TransportUDP}, gen: udpGen}, RelayAddressGenerator: udpGen, PermissionHandler: perm,
		}},
	}
	streams := []struct {
		name, addr, transport string
		listen                func(addr string) (net.Listener, error)
	}{
		{"tcp", cfg.ListenTCP, TransportTCP, func(a string) (net.Listener, error) { return net.Listen("tcp4", a) }},
		{"tls", cfg.ListenTLS, TransportTLS, func(a string) (net.Listener, error) { return tls.Listen("tcp4", a, cfg.TLSConfig) }},
	}
	for _, st := range streams {
		if st.addr == "" {
			continue
		}
		l, err := st.listen(st.addr)
		if err != nil {
			s.closeListeners()
			return sc, fmt.Errorf("turn: listen %s %s: %w", st.name, st.addr, err)
		}
		s.tcpListeners = append(s.tcpListeners, l)
		sc.ListenerConfigs = append(sc.ListenerConfigs, pturn.ListenerConfig{Listener: &gateListener{Listener: l, s: s, transport: st.transport},
			RelayAddressGenerator: &generator{s: s}, PermissionHandler: perm})
	}
	return sc, nil
}

// closeListeners closes what listen opened (before pion's server owns it).
func (s *Server) closeListeners() {
	_ = s.udp.Close()
	for _, l := range s.tcpListeners {
		_ = l.Close()
	}
}

// Addr returns the UDP listener address.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// tcpAddrs returns the TCP and TLS listener addresses (TCP first).
func (s *Server) tcpAddrs() []string {
	var out []string
	for _, l := range s.tcpListeners {
		out = append(out, l.Addr().String())
	}
	return out
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	live := s.live
	s.mu.Unlock()
	return Stats{Live: live, Total: s.total.Load(), Refused: s.refused.Load(),
		AuthFailures: s.authFailures.Load(), PeersDenied: s.peersDenied.Load(),
		RateLimited: s.rateLimited.Load(), BannedDropped: s.bannedDropped.Load()}
}

// Close stops the listeners and closes every allocation.
func (s *Server) Close() error {
	return s.srv.Close()
}

func (s *Server) atQuota(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.QuotaPerUser > 0 && user != "" && s.users[user] >= s.cfg.QuotaPerUser
}

// reserve takes a quota slot for user ("" when unattributed).
func (s *Server) reserve(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxAllocations > 0 && s.live >= int64(s.cfg.MaxAllocations) {
		return false
	}
	if s.cfg.QuotaPerUser > 0 && user != "" && s.users[user] >= s.cfg.QuotaPerUser {
		return false
	}
	s.live++
	if user != "" {
		s.users[user]++
	}
	return true
}

func (s *Server) unreserve(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live--
	if user != "" {
		if s.users[user]--; s.users[user] <= 0 {
			delete(s.users, user)
		}
	}
}

func (s *Server) onDeny(client net.Addr, peer netip.Addr) {
	s.peersDenied.Add(1)
	now := time.Now().UnixNano()
	if n := s.denyLog.Load(); now >= n && s.denyLog.CompareAndSwap(n, now+int64(10*time.Second)) {
		s.log.Warn("TURN peer denied (internal or own address)", "client", client.String(), "peer", peer)
	}
}

package media

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-sbc/portcullis/media/fastpath"
	"github.com/portcullis-sbc/portcullis/media/relay"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultHoldTimeout = time.Hour
	// DefaultMaxStreams is the most relayed m-lines of one call: audio, main video, content
	// video, BFCP and the far end's extras fit with room to spare.
	DefaultMaxStreams = 8
	// DefaultMaxUnansweredPorts is the most relay ports one source may hold in calls not
	// answered yet: 16 three-stream calls ringing at once (a stream holds 4 ports).
	DefaultMaxUnansweredPorts = 192
)

// portsPerStream is what one relayed m-line holds: an RTP/RTCP pair facing each leg.
const portsPerStream = 4

// Config configures a [Manager]. Zero durations take their defaults.
type Config struct {
	// BindAddr is the local address relay sockets bind to (e.g. 0.0.0.0).
	BindAddr netip.Addr
	// Advertise is the address written into SDP (the public media address).
	// Defaults to BindAddr when that is not unspecified.
	Advertise netip.Addr
	// Advertise6, when set, is written into SDP instead of Advertise toward a leg whose peer
	// is on IPv6 (BindAddr must then be "::" or IPv6, so the relay sockets take both
	// families). The family of a leg is learnt from the signalling source of its SDP.
	Advertise6 netip.Addr
	// PortMin and PortMax bound the RTP/RTCP port range (inclusive).
	PortMin, PortMax int
	// Drain is how long released ports discard traffic before reuse (5 s).
	Drain time.Duration
	// LatchWindow is the latching learning window (2 s).
	LatchWindow time.Duration
	// Timeout ends a call with no RTP in either direction (30 s).
	Timeout time.Duration
	// HoldTimeout replaces Timeout while the call is on hold (1 h).
	HoldTimeout time.Duration
	// KeepICE passes a=candidate/a=ice-* through. By default they are
	// stripped: the relay does not answer ICE checks, and candidates would
	// leak the endpoints' addresses and let them bypass the relay.
	KeepICE bool
	// MaxStreams is the most relayed (port not 0) m-lines an SDP may have; an SDP with more,
	// or with more than 4x as many m-lines at all, is refused with ErrTooManyStreams before
	// any port is taken (default 8).
	MaxStreams int
	// MaxUnansweredPorts is the most relay ports one caller source (the IP a leg A offer came
	// from) may hold in calls whose callee has not answered yet; a new call past it is
	// refused with ErrSourceBusy before any port is taken (default 192; a stream holds 4).
	MaxUnansweredPorts int
	// Exempt, when set, names sources without that cap (cluster peers, allow-listed
	// partners).
	Exempt func(netip.Addr) bool
	// AllowPeers are networks media may be sent to, and latched from, although the shared
	// peer deny list (loopback, private, link-local, multicast, ...; see peerfilter.Denied)
	// or OwnAddrs would refuse them. Default: none.
	AllowPeers []netip.Prefix
	// OwnAddrs are the node's own addresses, refused as media peers unless allowed. Bind,
	// Advertise and the host's interface addresses are always included.
	OwnAddrs []netip.Addr
	// FastPath tries the kernel media path (media.fastpath: auto): latched RTP is
	// forwarded by an eBPF program at TC ingress. Refused (no CAP_BPF and
	// CAP_NET_ADMIN, old kernel), media stays in userspace. Default: off.
	FastPath bool
	// Logger is the component logger (default: discard).
	Logger *slog.Logger
}

// Manager owns the port pool, the sessions and the media-timeout ticker.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	pool  *relay.Pool
	peers *relay.PeerFilter
	fp    *fastpath.FastPath // nil: userspace only
	mode  fastpath.Mode

	mu         sync.Mutex
	sessions   map[string]*Session
	unanswered map[netip.Addr]int // relay ports held per caller source in unanswered calls
	closed     bool

	cancel context.CancelFunc
	done   chan struct{}

	// totals of streams already closed, plus session counters
	closedPackets, closedBytes, closedDropped, closedLost atomic.Uint64
	sessionsTotal, timeouts                               atomic.Uint64
	tcpLog                                                logGate // TCP m-lines rejected
}

// Stats is the manager-wide snapshot for metrics.
type Stats struct {
	Sessions      int             `json:"sessions"` // live
	Streams       int             `json:"streams"`  // live
	SessionsTotal uint64          `json:"sessions_total"`
	Timeouts      uint64          `json:"timeouts"`
	Pool          relay.PoolStats `json:"pool"`
	Packets       uint64          `json:"packets"` // RTP packets relayed, both directions, all time
	Bytes         uint64          `json:"bytes"`
	Dropped       uint64          `json:"dropped"` // wrong-source packets
	Lost          uint64          `json:"lost"`
	FastPath      string          `json:"fastpath"` // media path: kernel or userspace
}

// NewManager validates cfg and starts the timeout ticker.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = DefaultHoldTimeout
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxUnansweredPorts <= 0 {
		cfg.MaxUnansweredPorts = DefaultMaxUnansweredPorts
	}
	if !cfg.Advertise.IsValid() {
		if !cfg.BindAddr.IsValid() || cfg.BindAddr.IsUnspecified() {
			return nil, fmt.Errorf("%w: advertise address required when binding to %v", ErrBadConfig, cfg.BindAddr)
		}
		cfg.Advertise = cfg.BindAddr
	}
	log := cfg.Logger
	pool, err := relay.NewPool(relay.PoolConfig{Bind: cfg.BindAddr, Min: cfg.PortMin, Max: cfg.PortMax, Drain: cfg.Drain, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	own := append([]netip.Addr{cfg.BindAddr, cfg.Advertise}, cfg.OwnAddrs...)
	if cfg.Advertise6.IsValid() {
		own = append(own, cfg.Advertise6)
	}
	own = append(own, relay.InterfaceAddrs()...)
	m := &Manager{cfg: cfg, log: log, pool: pool, peers: relay.NewPeerFilter(cfg.AllowPeers, own),
		sessions: map[string]*Session{}, unanswered: map[netip.Addr]int{}, cancel: cancel, done: make(chan struct{})}
	m.fp, m.mode = openFastPath(cfg.FastPath, cfg.BindAddr, log)
	go m.watch(ctx)
	return m, nil
}

// Pool returns the shared port pool (the TURN server allocates from it too).
func (m *Manager) Pool() *relay.Pool { return m.pool }

// NewSession creates the media session of a call. It returns
// ErrPoolExhausted when fewer than two port pairs (one stream) are free, so
// the B2BUA can answer 503 before ringing anyone.
func (m *Manager) NewSession(id string, onTimeout func(reason string)) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.sessions[id]; ok {
		return nil, fmt.Errorf("%w: %q", ErrSessionExists, id)
	}
	if m.pool.Free() < 2 {
		return nil, ErrPoolExhausted
	}
	s := newSession(m, id, onTimeout)
	m.sessions[id] = s
	m.sessionsTotal.Add(1)
	return s, nil
}

// holdUnanswered raises what src holds in unanswered calls from have to want ports and
// returns what the session now holds, or refuses with ErrSourceBusy when that would pass the
// cap. An exempt source holds nothing.
func (m *Manager) holdUnanswered(src netip.Addr, have, want int) (int, error) {
	if want <= have || (m.cfg.Exempt != nil && m.cfg.Exempt(src)) {
		return have, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.unanswered[src] - have + want
	if n > m.cfg.MaxUnansweredPorts {
		return have, fmt.Errorf("%w: %s would hold %d ports (limit %d)", ErrSourceBusy, src, n, m.cfg.MaxUnansweredPorts)
	}
	m.unanswered[src] = n
	return want, nil
}

// releaseUnanswered gives back ports src held in an unanswered call.
func (m *Manager) releaseUnanswered(src netip.Addr, ports int) {
	if ports == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.unanswered[src] - ports; n > 0 {
		m.unanswered[src] = n
	} else {
		delete(m.unanswered, src)
	}
}

func (m *Manager) forget(s *Session) {
	m.mu.Lock()
	if m.sessions[s.id] == s {
		delete(m.sessions, s.id)
	}
	m.mu.Unlock()
}

func (m *Manager) live() []*Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, s)
	}
	return out
}

// Stats returns totals for metrics.
func (m *Manager) Stats() Stats {
	st := Stats{
		Pool: m.pool.Stats(), SessionsTotal: m.sessionsTotal.Load(), Timeouts: m.timeouts.Load(),
		Packets: m.closedPackets.Load(), Bytes: m.closedBytes.Load(), Dropped: m.closedDropped.Load(), Lost: m.closedLost.Load(),
		FastPath: string(m.mode),
	}
	for _, s := range m.live() {
		st.Sessions++
		for _, ss := range s.Streams() {
			st.Streams++
			st.Packets += ss.AToB.Packets + ss.BToA.Packets
			st.Bytes += ss.AToB.Bytes + ss.BToA.Bytes
			st.Dropped += ss.AToB.Dropped + ss.BToA.Dropped
			st.Lost += ss.AToB.Lost + ss.BToA.Lost
		}
	}
	return st
}

func (m *Manager) account(st relay.Stats) {
	m.closedPackets.Add(st.AToB.Packets + st.BToA.Packets)
	m.closedBytes.Add(st.AToB.Bytes + st.BToA.Bytes)
	m.closedDropped.Add(st.AToB.Dropped + st.BToA.Dropped)
	m.closedLost.Add(st.AToB.Lost + st.BToA.Lost)
}

// watch is the one ticker of the manager: it checks every session's last
// media time against its timeout.
func (m *Manager) watch(ctx context.Context) {
	defer close(m.done)
	every := min(m.cfg.Timeout, m.cfg.HoldTimeout) / 4
	every = max(min(every, time.Second), 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, s := range m.live() {
				if reason, ok := s.expired(now); ok {
					m.timeouts.Add(1)
					m.log.Info("media timeout", "session", s.id, "reason", reason)
					if s.onTimeout != nil {
						s.onTimeout(reason)
					}
				}
			}
		}
	}
}

// Close closes every session, stops the ticker and closes the pool.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	<-m.done
	for _, s := range m.live() {
		s.Close()
	}
	if m.fp != nil {
		_ = m.fp.Close()
	}
	return m.pool.Close()
}

// kernelPath is what streams get as their kernel path: nil (not a typed nil
// pointer) when media stays in userspace.
func (m *Manager) kernelPath() relay.KernelPath {
	if m.fp == nil {
		return nil
	}
	return m.fp
}

// is6 reports whether a is an IPv6 peer (not an IPv4 address mapped into IPv6).
func is6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// advertiseFor is the relay address written into SDP sent toward a peer on IPv6 (v6) or not.
func (m *Manager) advertiseFor(v6 bool) netip.Addr {
	if a := m.cfg.Advertise6; a.IsValid() && v6 {
		return a
	}
	return m.cfg.Advertise
}

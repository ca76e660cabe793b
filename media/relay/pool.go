package relay

import (
	crand "crypto/rand"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultDrain is how long a released pair stays bound (and discards what
// reaches it) before its ports are free again.
const DefaultDrain = 5 * time.Second

// socketBuffer is the receive/send buffer asked for each relay socket.
const socketBuffer = 256 << 10

// PoolConfig configures a [Pool].
type PoolConfig struct {
	// Bind is the local address the sockets bind to (e.g. 0.0.0.0 or 127.0.0.1).
	Bind netip.Addr
	// Min and Max bound the port range, inclusive. Pairs start on even ports.
	Min, Max int
	// Drain is how long a released pair discards traffic before reuse
	// (default 5 s).
	Drain time.Duration
	// Logger receives exhaustion and startup messages (default: discard).
	Logger *slog.Logger
}

type pairState uint8

const (
	stateFree pairState = iota
	stateInUse
	stateDraining
)

// Pool hands out RTP/RTCP port pairs (even RTP port, RTP+1 for RTCP).
// It is safe for concurrent use; acquiring and releasing take a mutex, the
// packet path never does.
type Pool struct {
	cfg  PoolConfig
	log  *slog.Logger
	base int // first (even) RTP port

	mu        sync.Mutex
	states    []pairState
	pairs     []*Pair    // in-use or draining pairs, nil when free
	rng       *rand.Rand // picks pairs: ChaCha8 seeded from crypto/rand
	closed    bool
	exhausted bool // inside an exhaustion episode (logged once)
	refused   uint64
	drain     drainQueue // released pairs waiting out the drain, oldest first
}

// PoolStats is a snapshot of pool usage.
type PoolStats struct {
	Pairs    int `json:"pairs"`
	InUse    int `json:"in_use"`
	Draining int `json:"draining"`
	Free     int `json:"free"`
	// Refused counts acquisitions refused for exhaustion.
	Refused uint64 `json:"refused"`
	// SocketDrops is the kernel's receive-queue drop count summed over the
	// pool's currently open sockets (from /proc/net/udp; 0 when unavailable).
	SocketDrops uint64 `json:"socket_drops"`
	// GSOMessages and GSODatagrams count the UDP GSO messages the relay sent (bursts of
	// same-sized datagrams to one peer, one trip through the stack each) and the datagrams
	// they carried, process wide.
	GSOMessages  uint64 `json:"gso_messages"`
	GSODatagrams uint64 `json:"gso_datagrams"`
}

// NewPool validates cfg and returns an empty pool (no socket is bound until
// a pair is acquired).
func NewPool(cfg PoolConfig) (*Pool, error) {
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !cfg.Bind.IsValid() {
		return nil, fmt.Errorf("%w: bind address unset", ErrBadConfig)
	}
	base := cfg.Min
	if base%2 != 0 {
		base++
	}
	if cfg.Min < 1 || cfg.Max > 65535 || base+1 > cfg.Max {
		return nil, fmt.Errorf("%w: port range %d-%d holds no even/odd pair", ErrBadConfig, cfg.Min, cfg.Max)
	}
	n := (cfg.Max - base + 1) / 2
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails (crypto/rand panics rather than return an error)
	p := &Pool{cfg: cfg, log: cfg.Logger, base: base, states: make([]pairState, n), pairs: make([]*Pair, n),
		rng: rand.New(rand.NewChaCha8(seed))}
	_, procOK := socketDrops(base, cfg.Max)
	p.log.Info("relay port pool ready",
		"bind", cfg.Bind, "ports", fmt.Sprintf("%d-%d", base, base+2*n-1), "pairs", n, "drain", cfg.Drain,
		"fast_path", fastPath,
		"socket_drop_accounting", map[bool]string{true: "/proc/net/udp", false: "unavailable"}[procOK])
	return p, nil
}

// Range returns the first and last port the pool may use.
func (p *Pool) Range() (lo, hi int) { return p.base, p.base + 2*len(p.states) - 1 }

// Bind returns the address the pool's sockets bind to.
func (p *Pool) Bind() netip.Addr { return p.cfg.Bind }

// randomProbes is how many random pairs Acquire tries before it scans.
const randomProbes = 64

// Acquire binds and returns a free pair chosen at random, so that the ports of the next call
// cannot be predicted from the last one's (a stranger aiming at a ringing call's relay ports
// has to spray the whole range). It returns ErrPoolExhausted when every pair is in use or
// draining (or cannot be bound).
func (p *Pool) Acquire() (*Pair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPoolClosed
	}
	n := len(p.states)
	for range min(n, randomProbes) {
		idx := p.rng.IntN(n)
		if p.states[idx] != stateFree {
			continue
		}
		if pr, err := p.bindLocked(idx); err == nil {
			return pr, nil
		}
	}
	// A crowded pool: every free pair in turn from a random start.
	start := p.rng.IntN(n)
	for i := range n {
		idx := (start + i) % n
		if p.states[idx] != stateFree {
			continue
		}
		pr, err := p.bindLocked(idx)
		if err != nil {
			continue // port taken by someone else; try the next one
		}
		return pr, nil
	}
	p.refused++
	if !p.exhausted {
		p.exhausted = true
		p.log.Warn("relay port pool exhausted; refusing new media until ports free up", "pairs", n)
	}
	return nil, ErrPoolExhausted
}

// AcquirePort binds the pair whose RTP port is rtpPort, if it is in range and
// free.
func (p *Pool) AcquirePort(rtpPort int) (*Pair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPoolClosed
	}
	idx := (rtpPort - p.base) / 2
	if rtpPort < p.base || rtpPort%2 != 0 || idx >= len(p.states) {
		return nil, fmt.Errorf("%w: %d outside the pool", ErrPortUnavailable, rtpPort)
	}
	if p.states[idx] != stateFree {
		return nil, fmt.Errorf("%w: %d busy", ErrPortUnavailable, rtpPort)
	}
	pr, err := p.bindLocked(idx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPortUnavailable, err)
	}
	return pr, nil
}

func (p *Pool) bindLocked(idx int) (*Pair, error) {
	port := p.base + 2*idx
	rtp, err := listen(p.cfg.Bind, port)
	if err != nil {
		return nil, err
	}
	rtcp, err := listen(p.cfg.Bind, port+1)
	if err != nil {
		_ = rtp.Close()
		return nil, err
	}
	pr := &Pair{pool: p, idx: idx, port: port, RTP: rtp, RTCP: rtcp}
	p.states[idx] = stateInUse
	p.pairs[idx] = pr
	if p.exhausted {
		p.exhausted = false
		p.log.Info("relay port pool no longer exhausted")
	}
	return pr, nil
}

func listen(addr netip.Addr, port int) (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(port))))
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
	return c, nil
}

// Stats returns a usage snapshot.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	st := PoolStats{Pairs: len(p.states), Refused: p.refused}
	for _, s := range p.states {
		switch s {
		case stateFree:
			st.Free++
		case stateInUse:
			st.InUse++
		case stateDraining:
			st.Draining++
		}
	}
	p.mu.Unlock()
	lo, hi := p.Range()
	st.SocketDrops, _ = socketDrops(lo, hi)
	st.GSOMessages, st.GSODatagrams = GSOStats()
	return st
}

// Close closes every socket (in use and draining) and waits for the drain
// reaper to end. Owners of in-use pairs see their reads fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	for _, pr := range p.pairs {
		if pr != nil {
			pr.closeSockets()
		}
	}
	p.drain.stopLocked()
	p.mu.Unlock()
	p.drain.wg.Wait()
	return nil
}

// Pair is an RTP/RTCP socket pair from a [Pool]. Its owner reads from and
// writes to the sockets until it calls Release (or ReleaseNow) once.
type Pair struct {
	RTP, RTCP *net.UDPConn

	pool *Pool
	idx  int
	port int
	once sync.Once
}

// Port returns the RTP port (RTCP is Port()+1).
func (pr *Pair) Port() int { return pr.port }

// Release hands the pair back: its sockets stay bound for the pool's drain
// time, so that late packets of the ended call land on them (the kernel queues
// them, and drops what overflows) rather than on a new call's, then close
// (discarding whatever queued) and the ports become free. The owner must have
// stopped reading from the sockets.
func (pr *Pair) Release() { pr.release(pr.pool.cfg.Drain) }

// ReleaseNow hands the pair back without draining. Use it only for a pair
// that never exchanged traffic.
func (pr *Pair) ReleaseNow() { pr.release(0) }

func (pr *Pair) release(drain time.Duration) {
	pr.once.Do(func() {
		p := pr.pool
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed || drain <= 0 {
			pr.closeSockets()
			p.states[pr.idx] = stateFree
			p.pairs[pr.idx] = nil
			return
		}
		p.states[pr.idx] = stateDraining
		p.drainLocked(pr, time.Now().Add(drain))
	})
}

func (pr *Pair) closeSockets() {
	_ = pr.RTP.Close()
	_ = pr.RTCP.Close()
}

// Free returns the number of free pairs (cheap; no procfs read).
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.states {
		if s == stateFree {
			n++
		}
	}
	return n
}

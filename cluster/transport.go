package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The first byte a client writes after the TLS handshake selects the service.
const (
	muxRaft byte = 'R' // a Raft stream (raft.NetworkTransport)
	muxRPC  byte = 'C' // internal RPC between members
	muxJoin byte = 'J' // certificate request with a join token (join ALPN only)
)

const handshakeTimeout = 5 * time.Second

// mux owns the cluster listener: it terminates TLS and hands each connection to Raft or to the
// RPC server according to its first byte.
type mux struct {
	ln        net.Listener
	advertise string
	server    *tls.Config
	client    *tls.Config
	dialRaw   func(ctx context.Context, addr string) (net.Conn, error)
	log       *slog.Logger
	handle    func(c net.Conn, service byte) // serves muxRPC and muxJoin connections

	raftCh    chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // accepted connections not handed to Raft
}

func newMux(ln net.Listener, advertise string, m *tlsMaterial, dial func(context.Context, string) (net.Conn, error), log *slog.Logger) *mux {
	if dial == nil {
		dial = defaultDial
	}
	return &mux{
		ln: ln, advertise: advertise, server: m.serverConfig(), client: m.clientConfig(),
		dialRaw: dial, log: log, raftCh: make(chan net.Conn), closed: make(chan struct{}),
		conns: map[net.Conn]struct{}{},
	}
}

func (m *mux) start() {
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("cluster accept failed", "error", err, "retry_in", delay)
			select {
			case <-m.closed:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if !m.track(c) {
			_ = c.Close()
			return
		}
		m.wg.Add(1)
		go m.serve(c)
	}
}

func (m *mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closed:
		return false
	default:
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *mux) serve(raw net.Conn) {
	defer m.wg.Done()
	handedOff := false
	defer func() {
		if !handedOff {
			m.untrack(raw)
			_ = raw.Close()
		}
	}()
	c := tls.Server(raw, m.server)
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.Handshake(); err != nil {
		m.log.Debug("cluster handshake failed", "remote", raw.RemoteAddr(), "error", err)
		return
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	proto := c.ConnectionState().NegotiatedProtocol
	switch {
	case proto == alpnJoin && b[0] == muxJoin:
		m.handle(c, muxJoin)
	case proto == alpnMember && b[0] == muxRPC:
		m.handle(c, muxRPC)
	case proto == alpnMember && b[0] == muxRaft:
		select {
		case m.raftCh <- &ownedConn{Conn: c, raw: raw, m: m}:
			handedOff = true // Raft owns it now; mux.close still closes it
		case <-m.closed:
		}
	default:
		m.log.Warn("cluster connection refused: unexpected service", "remote", raw.RemoteAddr(),
			"alpn", proto, "service", b[0])
	}
}

func defaultDial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// dial opens a mutual-TLS connection to a member for the given service.
func (m *mux) dial(ctx context.Context, addr string, service byte) (net.Conn, error) {
	return dialTLS(ctx, m.dialRaw, addr, m.client, service)
}

func dialTLS(ctx context.Context, dialRaw func(context.Context, string) (net.Conn, error), addr string, cfg *tls.Config, service byte) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
	}
	raw, err := dialRaw(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := c.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	if _, err := c.Write([]byte{service}); err != nil {
		_ = raw.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// close stops accepting, closes every connection not owned by Raft and waits for the handlers.
func (m *mux) close() {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		close(m.closed)
		for c := range m.conns {
			_ = c.Close()
		}
		m.mu.Unlock()
		_ = m.ln.Close()
	})
	m.wg.Wait()
}

// ownedConn is an accepted connection handed to Raft: it stays tracked so that closing the
// node also ends Raft's handler goroutine blocked reading it.
type ownedConn struct {
	net.Conn
	raw net.Conn
	m   *mux
}

func (c *ownedConn) Close() error {
	c.m.untrack(c.raw)
	return c.Conn.Close()
}

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct {
	m      *mux
	closed chan struct{}
	once   sync.Once
}

var _ raft.StreamLayer = (*raftLayer)(nil)

var errLayerClosed = errors.New("cluster: raft stream layer closed")

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.closed:
		return nil, errLayerClosed
	case <-l.m.closed:
		return nil, errLayerClosed
	}
}

func (l *raftLayer) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *raftLayer) Addr() net.Addr { return advertiseAddr(l.m.advertise) }

func (l *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.m.dial(ctx, string(addr), muxRaft)
}

// advertiseAddr is a net.Addr whose String is the advertised address (it may be a host name).
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

package cluster

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// A frozen node (SIGSTOP) keeps its connections open but answers nothing: bytes sent to it
// vanish, it sends nothing, new TCP connections are accepted by the kernel and hang in the TLS
// handshake. faultNet.freeze makes an address such a black hole for connections dialed through
// the test network (every cluster connection is); thaw closes the connections that lost bytes.

// deadlines holds the read and write deadlines a user of a faultConn set.
type deadlines struct {
	mu        sync.Mutex
	read      time.Time
	write     time.Time
	swallowed bool // bytes were dropped: the stream is broken once thawed
}

// freezePoll is how often a blocked read on a frozen connection looks again.
const freezePoll = 10 * time.Millisecond

func (f *faultNet) freeze(addr string) {
	f.freezes.Store(true)
	f.mu.Lock()
	f.frozen[addr] = true
	f.mu.Unlock()
}

// thaw ends every freeze and closes the connections whose bytes were swallowed.
func (f *faultNet) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.frozen)
	for c := range f.conns {
		c.dl.mu.Lock()
		broken := c.dl.swallowed
		c.dl.mu.Unlock()
		if broken {
			_ = c.Conn.Close()
			delete(f.conns, c)
		}
	}
}

func (c *faultConn) isFrozen() bool {
	if !c.fn.freezes.Load() {
		return false
	}
	c.fn.mu.Lock()
	defer c.fn.mu.Unlock()
	return c.fn.frozen[c.from] || c.fn.frozen[c.to]
}

func (c *faultConn) Read(p []byte) (int, error) {
	if !c.fn.freezes.Load() {
		return c.Conn.Read(p)
	}
	for {
		c.dl.mu.Lock()
		dl := c.dl.read
		c.dl.mu.Unlock()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		if c.isFrozen() {
			time.Sleep(freezePoll)
			continue
		}
		slice := time.Now().Add(freezePoll)
		if !dl.IsZero() && dl.Before(slice) {
			slice = dl
		}
		_ = c.Conn.SetReadDeadline(slice)
		n, err := c.Conn.Read(p)
		if n > 0 || err == nil {
			return n, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, err
		}
	}
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.isFrozen() {
		c.dl.mu.Lock()
		c.dl.swallowed = true
		c.dl.mu.Unlock()
		return len(p), nil // into a socket buffer nobody reads
	}
	return c.Conn.Write(p)
}

func (c *faultConn) SetDeadline(t time.Time) error {
	c.dl.mu.Lock()
	c.dl.read, c.dl.write = t, t
	c.dl.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *faultConn) SetReadDeadline(t time.Time) error {
	c.dl.mu.Lock()
	c.dl.read = t
	c.dl.mu.Unlock()
	return c.Conn.SetReadDeadline(t) // wakes a read blocked before the freeze
}

func (c *faultConn) SetWriteDeadline(t time.Time) error {
	c.dl.mu.Lock()
	c.dl.write = t
	c.dl.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

var _ net.Conn = (*faultConn)(nil)

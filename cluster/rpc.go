package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/connpeek"
)

// Internal RPC between members (and the join handshake): each message is a 4-byte big-endian
// length and a JSON body; a connection carries one request at a time and is pooled.

// RPC operations.
const (
	opApply   = "apply"   // leader: apply Cmds, one error per command
	opBarrier = "barrier" // leader: Raft barrier, returns the index every node must reach
	opJoin    = "join"    // leader: add ID at Addr as a voter
	opRemove  = "remove"  // leader: remove ID
	opMembers = "members" // leader: its view of the members
	opPing    = "ping"    // anyone: liveness
	opCert    = "cert"    // CA holder (join ALPN): sign CSR for a token holder
)

const maxFrame = 64 << 20

type rpcRequest struct {
	Op     string   `json:"op"`
	Cmds   [][]byte `json:"cmds,omitempty"`
	ID     string   `json:"id,omitempty"`
	Addr   string   `json:"addr,omitempty"`
	Secret string   `json:"secret,omitempty"`
	CSR    []byte   `json:"csr,omitempty"`
	// Formats: the log formats the whole cluster applies, as the leader pinging says (once.go).
	Formats int `json:"formats,omitempty"`
}

type rpcResponse struct {
	Err     *rpcError   `json:"err,omitempty"`
	Errs    []*rpcError `json:"errs,omitempty"`
	Index   uint64      `json:"index,omitempty"`
	Leader  string      `json:"leader,omitempty"` // where to retry after not_leader
	Members []Member    `json:"members,omitempty"`
	Cert    []byte      `json:"cert,omitempty"`
	CA      []byte      `json:"ca,omitempty"`
	// Formats: the log formats the answering node applies (ping), or the whole cluster does
	// (apply, from the leader); see batch.go. Absent from older nodes.
	Formats int `json:"formats,omitempty"`
	// Time is the answering node's clock (ping), for the leader's clock-skew view.
	Time time.Time `json:"time,omitzero"`
}

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("cluster: rpc frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// serveRPC answers requests on one connection until it closes.
func serveRPC(c net.Conn, idle time.Duration, handle func(*rpcRequest) *rpcResponse) {
	br := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(idle))
		var req rpcRequest
		if err := readFrame(br, &req); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		resp := handle(&req)
		_ = c.SetWriteDeadline(time.Now().Add(handshakeTimeout))
		if err := writeFrame(c, resp); err != nil {
			return
		}
	}
}

// errNotSent marks an RPC failure before the request left this node: safe to retry anywhere.
var errNotSent = errors.New("cluster: request not sent")

// rpcClient keeps idle connections to members.
type rpcClient struct {
	m      *mux
	mu     sync.Mutex
	idle   map[string][]*rpcConn
	closed bool
}

type rpcConn struct {
	c     net.Conn
	br    *bufio.Reader
	watch chan error // while idle in the pool: the result of a blocked read
}

// idle starts watching a pooled connection: a read that returns means the peer closed it (or
// broke the protocol), so it must not be reused; sending on it would leave a write's outcome
// unknown.
func (c *rpcConn) idle() {
	c.watch = make(chan error, 1)
	go func() {
		_, err := c.br.Peek(1)
		c.watch <- err
	}()
}

// reuse stops the watcher and reports whether the connection is still good.
func (c *rpcConn) reuse() bool {
	_ = c.c.SetReadDeadline(time.Now())
	err := <-c.watch
	_ = c.c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !connpeek.PeerGone(c.c)
}

const maxIdlePerPeer = 32

func newRPCClient(m *mux) *rpcClient { return &rpcClient{m: m, idle: map[string][]*rpcConn{}} }

func (rc *rpcClient) get(ctx context.Context, addr string) (*rpcConn, error) {
	rc.mu.Lock()
	if rc.closed {
		rc.mu.Unlock()
		return nil, ErrClosed
	}
	for l := rc.idle[addr]; len(l) > 0; l = rc.idle[addr] {
		c := l[len(l)-1]
		rc.idle[addr] = l[:len(l)-1]
		rc.mu.Unlock()
		if c.reuse() {
			return c, nil
		}
		_ = c.c.Close()
		rc.mu.Lock()
	}
	rc.mu.Unlock()
	c, err := rc.m.dial(ctx, addr, muxRPC)
	if err != nil {
		return nil, err
	}
	return &rpcConn{c: c, br: bufio.NewReader(c)}, nil
}

func (rc *rpcClient) put(addr string, c *rpcConn) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed || len(rc.idle[addr]) >= maxIdlePerPeer {
		_ = c.c.Close()
		return
	}
	c.idle()
	rc.idle[addr] = append(rc.idle[addr], c)
}

// call sends req to addr and waits for the answer until ctx's deadline. An error wrapping
// errNotSent means the request never left; any other error leaves its outcome unknown.
func (rc *rpcClient) call(ctx context.Context, addr string, req *rpcRequest) (*rpcResponse, error) {
	c, err := rc.get(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errNotSent, addr, err)
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(DefaultApplyTimeout)
	}
	_ = c.c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeFrame(c.c, req); err != nil {
		_ = c.c.Close()
		// A pooled connection may have been closed by the peer: nothing was processed.
		return nil, fmt.Errorf("%w: %s: %w", errNotSent, addr, err)
	}
	var resp rpcResponse
	if err := readFrame(c.br, &resp); err != nil {
		_ = c.c.Close()
		return nil, fmt.Errorf("cluster: rpc %s to %s: %w", req.Op, addr, err)
	}
	_ = c.c.SetDeadline(time.Time{})
	rc.put(addr, c)
	return &resp, nil
}

func (rc *rpcClient) close() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.closed = true
	for addr, l := range rc.idle {
		for _, c := range l {
			_ = c.c.Close()
		}
		delete(rc.idle, addr)
	}
}

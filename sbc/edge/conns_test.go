package edge

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestKeepaliveDoesNotHoldConnection (issue 14 item 8): a connection that sends only CRLF
// keepalives and never a message is closed after the read timeout, not the idle timeout; once
// a message went through, keepalives keep it open (RFC 5626 flows).
func TestKeepaliveDoesNotHoldConnection(t *testing.T) {
	closed := make(chan netip.AddrPort, 4)
	l, st := startListener(t, Limits{MaxMessageSize: 4096, ReadTimeout: 300 * time.Millisecond,
		IdleTimeout: time.Minute, MaxConnsPerSource: 4}, nil, closed)
	ping := func(c net.Conn, stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := io.WriteString(c, "\r\n\r\n"); err != nil {
					return
				}
			}
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	go ping(idle, stop)
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("a keepalive-only connection was held past the read timeout")
	}
	if st.ClosedSlow.Load() != 1 {
		t.Fatalf("slow=%d idle=%d", st.ClosedSlow.Load(), st.ClosedIdle.Load())
	}
	// A flow that sent a message lives on keepalives: it outlasts many read timeouts (checked by
	// the keepalive-only connection above being closed while this one is not).
	flow, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	io.WriteString(flow, "OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	go ping(flow, stop)
	other, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go ping(other, stop)
	select {
	case r := <-closed:
		if r.String() != other.LocalAddr().String() {
			t.Fatalf("closed %s, want the keepalive-only %s (the flow %s must stay)", r, other.LocalAddr(), flow.LocalAddr())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the second keepalive-only connection was not closed")
	}
}

// remoteListener is a real TCP listener whose accepted connections claim another remote
// address: loopback has no IPv6 /64 with many addresses, so this is how a test gets sources in
// one /64 (and in another) to the edge.
type remoteListener struct {
	net.Listener
	mu   sync.Mutex
	next []netip.AddrPort
}

type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

func (l *remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.next[0]
	l.next = l.next[1:]
	return remoteConn{c, net.TCPAddrFromAddrPort(r)}, nil
}

// TestConnectionCapsPerPrefixAndGlobal: IPv6 sources share a cap per /64 (an attacker's /64
// holds 2^64 addresses), and a global cap bounds all connections; refusals are counted.
func TestConnectionCapsPerPrefixAndGlobal(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &remoteListener{Listener: raw}
	p := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	rl.next = []netip.AddrPort{
		p("[2001:db8:1:2::1]:5000"), p("[2001:db8:1:2::2]:5000"), p("[2001:db8:1:2::3]:5000"), // one /64: third refused
		p("[2001:db8:9:9::1]:5000"), p("192.0.2.1:5000"), // others: accepted (global now 4)
		p("192.0.2.2:5000"), // over the global cap of 4
	}
	st := &Stats{}
	l := NewListener(rl, "TCP", nil, Limits{MaxMessageSize: 4096, ReadTimeout: time.Minute, IdleTimeout: time.Minute,
		MaxConnsPerSource: 10, MaxConnsPerPrefix: 2, MaxConns: 4}, st, nil, slog.New(slog.DiscardHandler))
	defer l.Close()
	dials := len(rl.next)
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range dials {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	var got []string
	for range 4 {
		select {
		case c := <-accepted:
			got = append(got, c.RemoteAddr().String())
			defer c.Close()
		case <-time.After(10 * time.Second):
			t.Fatalf("accepted only %v", got)
		}
	}
	for _, i := range []int{2, 5} {
		clients[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := clients[i].Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("connection %d was not refused: %v", i, err)
		}
	}
	if st.RefusedPrefix.Load() != 1 || st.RefusedGlobal.Load() != 1 || st.RefusedConns.Load() != 0 {
		t.Fatalf("refused: per source %d, per /64 %d, global %d", st.RefusedConns.Load(), st.RefusedPrefix.Load(), st.RefusedGlobal.Load())
	}
	select {
	case c := <-accepted:
		t.Fatalf("accepted %s past the caps", c.RemoteAddr())
	default:
	}
	t.Logf("accepted %v", got)
}

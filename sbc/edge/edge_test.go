package edge

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

func TestFramer(t *testing.T) {
	msg := "INVITE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello"
	tests := []struct {
		name    string
		chunks  []string
		max     int
		want    bool // message in progress after the last chunk
		wantErr error
	}{
		{"whole message", []string{msg}, 1000, false, nil},
		{"keepalive only", []string{"\r\n\r\n"}, 1000, false, nil},
		{"split everywhere", strings.Split(msg, ""), 1000, false, nil},
		{"header half", []string{msg[:20]}, 1000, true, nil},
		{"body half", []string{msg[:len(msg)-2]}, 1000, true, nil},
		{"two messages and a half", []string{msg + msg + msg[:10]}, 1000, true, nil},
		{"blank line split over chunks", []string{"OPTIONS sip:x SIP/2.0\r\nl: 0\r", "\n\r", "\n"}, 1000, false, nil},
		{"compact length", []string{"OPTIONS sip:x SIP/2.0\r\nl:2\r\n\r\nab"}, 1000, false, nil},
		{"no length means no body", []string{"OPTIONS sip:x SIP/2.0\r\n\r\n"}, 1000, false, nil},
		{"headers too large", []string{strings.Repeat("X", 200)}, 100, true, ErrMessageTooLarge},
		{"body too large", []string{"A\r\nContent-Length: 500\r\n\r\n"}, 100, true, ErrMessageTooLarge},
		{"bad length", []string{"A\r\nContent-Length: -1\r\n\r\n"}, 100, true, ErrBadFraming},
		{"conflicting lengths", []string{"A\r\nContent-Length: 1\r\nl: 2\r\n\r\n"}, 100, true, ErrBadFraming},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFramer(tt.max)
			var got bool
			var err error
			for _, c := range tt.chunks {
				if got, err = f.feed([]byte(c)); err != nil {
					break
				}
			}
			if !errors.Is(err, tt.wantErr) || (err == nil && got != tt.want) {
				t.Fatalf("got (%v, %v), want (%v, %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzFramer(f *testing.F) {
	f.Add([]byte("INVITE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello"), 7)
	f.Add([]byte("\r\n\r\nOPTIONS sip:x SIP/2.0\r\nl: 0\r\n\r\n"), 3)
	f.Add([]byte("A\r\nContent-Length: 99999999999\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		// Feeding in one piece or in two must agree (in progress, error, messages completed:
		// the stream meter counts those), and must never panic.
		whole := newFramer(4096)
		w, werr := whole.feed(data)
		parts := newFramer(4096)
		cut := 0
		if len(data) > 0 {
			cut = (split%len(data) + len(data)) % len(data)
		}
		p, perr := parts.feed(data[:cut])
		if perr == nil {
			p, perr = parts.feed(data[cut:])
		}
		if (werr == nil) != (perr == nil) || (werr == nil && (w != p || whole.done != parts.done)) {
			t.Fatalf("whole=(%v,%v,%d msgs) split at %d=(%v,%v,%d msgs)", w, werr, whole.done, cut, p, perr, parts.done)
		}
	})
}

func startListener(t *testing.T, lim Limits, admit Admit, closed chan<- netip.AddrPort) (*Listener, *Stats) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := &Stats{}
	l := NewListener(raw, "TCP", admit, lim, st, func(_ string, r netip.AddrPort) {
		if closed != nil {
			closed <- r
		}
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { // echo whole lines back, like a server reading messages
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return l, st
}

func TestSlowlorisClosed(t *testing.T) {
	closed := make(chan netip.AddrPort, 4)
	l, st := startListener(t, Limits{MaxMessageSize: 4096, ReadTimeout: 200 * time.Millisecond,
		IdleTimeout: 5 * time.Second, MaxConnsPerSource: 4}, nil, closed)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A complete message keeps the connection; a message started and never finished closes it.
	io.WriteString(c, "OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	io.WriteString(c, "OPTIONS sip:x SIP/2.0\r\n")
	start := time.Now()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("slow message did not close the connection")
	}
	if time.Since(start) > 2*time.Second || st.ClosedSlow.Load() != 1 {
		t.Fatalf("closed after %v, slow=%d", time.Since(start), st.ClosedSlow.Load())
	}
}

func TestPerSourceCapAndAdmission(t *testing.T) {
	var denied atomic.Bool
	l, st := startListener(t, Limits{MaxMessageSize: 4096, ReadTimeout: time.Second, IdleTimeout: time.Second,
		MaxConnsPerSource: 2}, func(netip.AddrPort) bool { return !denied.Load() }, nil)
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	// The third connection is closed by the edge: reading it ends at once.
	conns[2].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conns[2].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("third connection was not refused: %v", err)
	}
	if st.RefusedConns.Load() != 1 {
		t.Fatalf("refused=%d", st.RefusedConns.Load())
	}
	denied.Store(true)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("denied source was not refused: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestPacketConnDropsRefusedWithoutAllocating(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	banned := netip.MustParseAddr("127.0.0.1")
	st := &Stats{}
	c := NewPacketConn(pc, func(a netip.AddrPort) bool { return a.Addr() != banned }, Limits{MaxMessageSize: 100}, st)
	tx, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	buf := make([]byte, 2048)
	allocs := testing.AllocsPerRun(50, func() {
		tx.Write([]byte("OPTIONS"))
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		c.ReadFrom(buf)
	})
	if st.DroppedSource.Load() < 50 {
		t.Fatalf("dropped=%d", st.DroppedSource.Load())
	}
	// The only allocations are the deadline error of each read; the drop path itself adds none.
	if allocs > 3 {
		t.Fatalf("%.1f allocations per refused datagram", allocs)
	}
}

// TestPacketConnMeter: a datagram the meter refuses is dropped before anything else looks at
// it (an oversized one too: it spends its source's rate) and counted; the meter sees the
// unmapped source address and port.
func TestPacketConnMeter(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	st := &Stats{}
	c := NewPacketConn(pc, nil, Limits{MaxMessageSize: 1000}, st)
	allowed := 3
	var seen []netip.AddrPort
	c.SetMeter(func(src netip.AddrPort) bool {
		seen = append(seen, src)
		allowed--
		return allowed >= 0
	})
	tx, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	msg := []byte("OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\r\n")
	for range 5 {
		tx.Write(msg)
	}
	tx.Write(make([]byte, 1500))
	buf := make([]byte, 2048)
	got := 0
	for {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := c.ReadFrom(buf); err != nil {
			break
		}
		got++
	}
	if got != 3 || st.DroppedRate.Load() != 3 || st.DroppedOversize.Load() != 0 {
		t.Fatalf("read %d, dropped for rate %d, oversize %d; want 3, 3, 0", got, st.DroppedRate.Load(), st.DroppedOversize.Load())
	}
	if len(seen) != 6 || seen[0] != netip.MustParseAddrPort(tx.LocalAddr().String()) {
		t.Fatalf("meter saw %v, want 6 datagrams from %s", seen, tx.LocalAddr())
	}
}

// TestStreamMeter: every complete message read from a TCP connection is metered (keepalive
// CRLFs and partial messages are not); the connection of a peer over its rate is closed and
// counted.
func TestStreamMeter(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := &Stats{}
	l := NewListener(raw, "TCP", nil, Limits{MaxMessageSize: 4096, ReadTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second,
		MaxConnsPerSource: 4}, st, nil, slog.New(slog.DiscardHandler))
	defer l.Close()
	var metered atomic.Int32
	l.SetMeter(func(netip.AddrPort) bool { return metered.Add(1) <= 3 })
	readErr := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			readErr <- err
			return
		}
		_, err = io.Copy(io.Discard, c)
		readErr <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n"
	c.Write([]byte("\r\n\r\n" + msg + msg + "\r\n\r\n" + msg[:10])) // keepalives, 2 messages, a partial one
	testutil.Eventually(t, "the two whole messages metered", func() bool { return metered.Load() >= 2 })
	time.Sleep(50 * time.Millisecond) // the partial message must stay unmetered
	if got := metered.Load(); got != 2 {
		t.Fatalf("%d messages metered, want 2", got)
	}
	c.Write([]byte(msg[10:] + msg + msg))
	select {
	case err := <-readErr:
		if !errors.Is(err, ErrOverRate) {
			t.Fatalf("server read ended with %v, want ErrOverRate", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the connection over its rate was not closed")
	}
	if st.ClosedRate.Load() != 1 {
		t.Fatalf("closed for rate %d", st.ClosedRate.Load())
	}
}

// TestPacketConnWriteSizeLimit: a datagram over the MTU but within the message size limit is
// sent whole (a room system's INVITE); one over the limit is refused and nothing is sent.
func TestPacketConnWriteSizeLimit(t *testing.T) {
	udp := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	peer := udp()
	pc := NewPacketConn(udp(), nil, Limits{MaxMessageSize: 8000}, &Stats{})
	for _, tt := range []struct {
		size    int
		wantErr error
	}{{3700, nil}, {8000, nil}, {8001, ErrMessageTooLarge}} {
		n, err := pc.WriteTo(make([]byte, tt.size), peer.LocalAddr())
		if !errors.Is(err, tt.wantErr) {
			t.Fatalf("%d bytes: %v, want %v", tt.size, err, tt.wantErr)
		}
		if err != nil {
			continue
		}
		buf := make([]byte, 65536)
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _, err := peer.ReadFrom(buf)
		if err != nil || n != tt.size || got != tt.size {
			t.Fatalf("%d bytes: wrote %d, peer read %d (%v)", tt.size, n, got, err)
		}
	}
}

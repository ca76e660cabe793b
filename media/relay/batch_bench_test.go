package relay

import (
	"net"
	"testing"

	"golang.org/x/net/ipv4"
)

// The two benchmarks below are the experiment behind not using x/net's
// ReadBatch: they queue 16 datagrams on a socket and read them with 16
// ReadFromUDPAddrPort calls or with one ipv4.ReadBatch (recvmmsg). ReadBatch
// saves syscalls but allocates a net.UDPAddr and net.IP per datagram (x/net
// parses every source address), which the 0-allocation hot path cannot
// accept; the Linux reader calls recvmmsg itself (read_linux.go).
const batch = 16

func queued(b *testing.B) (*endpoint, *endpoint, []byte) {
	b.Helper()
	rx, tx := newEndpoint(b), newEndpoint(b)
	_ = rx.Conn.SetReadBuffer(1 << 20)
	return rx, tx, rtpPacket(96, 1, 2, 3, string(make([]byte, 1000)))
}

func BenchmarkReadSingle(b *testing.B) {
	rx, tx, pkt := queued(b)
	buf := make([]byte, readBuffer)
	b.ReportAllocs()
	for b.Loop() {
		for range batch {
			_, _ = tx.Conn.WriteToUDPAddrPort(pkt, rx.addr())
		}
		for range batch {
			if _, _, err := rx.Conn.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkReadBatch(b *testing.B) {
	rx, tx, pkt := queued(b)
	pc := ipv4.NewPacketConn(rx.Conn)
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, readBuffer)}
	}
	b.ReportAllocs()
	for b.Loop() {
		for range batch {
			_, _ = tx.Conn.WriteToUDPAddrPort(pkt, rx.addr())
		}
		for got := 0; got < batch; {
			n, err := pc.ReadBatch(msgs[:batch-got], 0)
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				_ = msgs[i].Addr.(*net.UDPAddr)
			}
			got += n
		}
	}
}

//go:build !linux || !(amd64 || arm64)

package relay

import (
	"net"
	"net/netip"
)

// readLoop is the socket's only reader.
func (s *Stream) readLoop(k *sock) {
	defer s.wg.Done()
	s.readLoopPortable(k)
}

// fastPath describes the packet path for the pool's startup log.
const fastPath = "one reader goroutine per socket, ReadFromUDPAddrPort/WriteToUDPAddrPort; 0 allocs/packet"

// sendState is empty where sends are not batched.
type sendState struct{}

func (*sendState) init(*net.UDPConn) {}

// write sends b to dst from k.
func (k *sock) write(b []byte, dst netip.AddrPort) { _, _ = k.conn.WriteToUDPAddrPort(b, dst) }

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

// pollState is empty where sockets are not polled.
type pollState struct{}

// pollStart starts one reader goroutine per socket.
func (s *Stream) pollStart() {
	for i := range s.legs {
		for _, k := range []*sock{&s.legs[i].rtp, &s.legs[i].rtcp} {
			s.wg.Add(1)
			go s.readLoop(k)
		}
	}
}

// pollStop has nothing to do: Close waits for the readers.
func (s *Stream) pollStop() {}

// write sends b to dst from k.
func (k *sock) write(b []byte, dst netip.AddrPort) { _, _ = k.conn.WriteToUDPAddrPort(b, dst) }

// StartPollers does nothing where sockets are not polled.
func StartPollers() {}

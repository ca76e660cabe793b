//go:build unix

package connpeek

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// PeerGone reports whether the peer of an idle connection has closed it or sent something
// (which an idle RPC or syslog connection never should): a non-blocking MSG_PEEK on the socket. It
// answers false when it cannot tell.
func PeerGone(c net.Conn) bool {
	for {
		switch x := c.(type) {
		case *tls.Conn:
			c = x.NetConn()
			continue
		case interface{ Unwrap() net.Conn }:
			c = x.Unwrap()
			continue
		}
		break
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var buf [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n > 0 || err == nil || !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EWOULDBLOCK)
		return true
	})
	return gone
}

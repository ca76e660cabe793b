//go:build linux && (amd64 || arm64)

package relay

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendState is what a socket needs for sendmmsg: its descriptor and address
// family, read once when the stream starts. The descriptor stays valid while
// any reader runs: a stream releases its pairs only after its readers exit.
type sendState struct {
	fd     int
	family uint16 // AF_INET or AF_INET6; 0: no batching (WriteToUDPAddrPort)
}

func (o *sendState) init(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		dom, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err == nil && (dom == unix.AF_INET || dom == unix.AF_INET6) {
			o.fd, o.family = int(fd), uint16(dom)
		}
	})
}

// sendBatch holds the datagrams of one receive batch that leave from the
// same socket, set up for one sendmmsg.
type sendBatch struct {
	msgs  [recvBatch]mmsghdr
	iov   [recvBatch]unix.Iovec
	names [recvBatch]unix.RawSockaddrInet6
	bufs  [recvBatch][]byte
	dsts  [recvBatch]netip.AddrPort
	out   *sock
	n     int
}

// forwardBatch forwards the n datagrams of the last recv: one alone as
// forward does; several with one sendmmsg per run of datagrams leaving from
// the same socket (the common case: a stream's RTP all goes to the other leg).
func (s *Stream) forwardBatch(k *sock, r *batchReader, n int, now int64) {
	if n == 1 {
		if b, src, ok := r.datagram(0); ok {
			s.forward(k, b, src, now)
		}
		return
	}
	q := &r.send
	for i := range n {
		b, src, ok := r.datagram(i)
		if !ok {
			continue
		}
		out, dst := s.route(k, b, src, now)
		if out == nil {
			continue
		}
		if q.n > 0 && (out != q.out || !q.add(b, dst)) {
			q.flush()
		}
		if q.n == 0 {
			q.out = out
			if !q.add(b, dst) {
				out.write(b, dst)
			}
		}
	}
	q.flush()
}

// add queues b for dst; false when dst cannot be encoded for the socket
// (a zoned IPv6 address, an IPv6 destination on an IPv4 socket).
func (q *sendBatch) add(b []byte, dst netip.AddrPort) bool {
	i := q.n
	nl, ok := sockaddr(&q.names[i], q.out.out.family, dst)
	if !ok {
		return false
	}
	q.bufs[i], q.dsts[i] = b, dst
	q.iov[i].Base = unsafe.SliceData(b)
	q.iov[i].SetLen(len(b))
	h := &q.msgs[i].hdr
	h.Name, h.Namelen = (*byte)(unsafe.Pointer(&q.names[i])), nl
	h.Iov = &q.iov[i]
	h.SetIovlen(1)
	q.n++
	return true
}

// flush sends what is queued: one datagram with sendto (as forward does), more
// with sendmmsg; what sendmmsg did not take (a full send buffer: EAGAIN) goes
// out one by one with write, which waits for room as forward does.
func (q *sendBatch) flush() {
	sent := 0
	if q.n > 1 {
		// MSG_DONTWAIT on UDP never sleeps, so the raw form is safe (as for recvmmsg).
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(q.out.out.fd), uintptr(unsafe.Pointer(&q.msgs[0])), uintptr(q.n), unix.MSG_DONTWAIT, 0, 0)
		if e == 0 {
			sent = int(r)
		}
	}
	for i := sent; i < q.n; i++ {
		q.out.write(q.bufs[i], q.dsts[i])
	}
	for i := range q.n {
		q.bufs[i] = nil
	}
	q.n, q.out = 0, nil
}

// sockaddr writes dst as the socket address a socket of family takes and
// returns its length.
func sockaddr(sa *unix.RawSockaddrInet6, family uint16, dst netip.AddrPort) (uint32, bool) {
	a := dst.Addr()
	switch {
	case family == unix.AF_INET && a.Unmap().Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		sa4.Port = ntohs(dst.Port())
		return unix.SizeofSockaddrInet4, true
	case family == unix.AF_INET6 && a.Zone() == "":
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		sa.Port = ntohs(dst.Port())
		return unix.SizeofSockaddrInet6, true
	}
	return 0, false
}

// write sends b to dst from k: sendto on the socket's descriptor, bypassing the
// runtime's poller (no descriptor lock, no scheduler hand-off: MSG_DONTWAIT on
// UDP never sleeps); WriteToUDPAddrPort, which waits for room, when the send
// buffer is full or dst cannot be encoded for the socket (a zoned IPv6 address).
func (k *sock) write(b []byte, dst netip.AddrPort) {
	if k.out.family != 0 {
		var sa unix.RawSockaddrInet6
		if nl, ok := sockaddr(&sa, k.out.family, dst); ok {
			_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(k.out.fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
				unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&sa)), uintptr(nl))
			if e != unix.EAGAIN && e != unix.EINTR {
				return
			}
		}
	}
	_, _ = k.conn.WriteToUDPAddrPort(b, dst)
}

//go:build linux && (amd64 || arm64)

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
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
	gso   unix.Msghdr   // one message of every queued datagram (UDP GSO)
	ctrl  [gsoCtrl]byte // its UDP_SEGMENT control message
}

// gsoCtrl is CMSG_SPACE(sizeof(uint16)) on 64-bit Linux: the UDP_SEGMENT control message.
const gsoCtrl = 24

// gsoOff is set once the kernel refuses UDP GSO (before Linux 4.18, or an egress without
// checksum offload): batches then leave with sendmmsg only.
var gsoOff atomic.Bool

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
// as one UDP GSO message when they make one (sendGSO), else with sendmmsg; what
// did not go (a full send buffer: EAGAIN) goes out one by one with write, which
// waits for room as forward does.
func (q *sendBatch) flush() {
	sent := 0
	if q.n > 1 && q.sendGSO() {
		sent = q.n
	} else if q.n > 1 {
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

// sendGSO sends every queued datagram as one UDP GSO message when they make one: the same
// destination and the same size, the last one possibly shorter (a video frame's packets, which a
// sender emits back to back). The stack then carries them as one buffer as far as the
// receiving socket (or the device), which splits them into the same datagrams; one traversal
// of routing, netfilter and the device instead of one per datagram. The message points at the
// datagrams where they were received (one iovec each, on segment boundaries): nothing is copied.
// False when they do not make one or the kernel refused it; the caller then uses sendmmsg.
func (q *sendBatch) sendGSO() bool {
	if gsoOff.Load() {
		return false
	}
	size := len(q.bufs[0])
	if size == 0 || size > 0xffff {
		return false
	}
	for i := 1; i < q.n; i++ {
		if q.dsts[i] != q.dsts[0] || len(q.bufs[i]) > size || (i < q.n-1 && len(q.bufs[i]) != size) || len(q.bufs[i]) == 0 {
			return false
		}
	}
	// struct cmsghdr {len uint64; level, type int32} + the segment size
	binary.NativeEndian.PutUint64(q.ctrl[0:], 16+2)
	binary.NativeEndian.PutUint32(q.ctrl[8:], unix.SOL_UDP)
	binary.NativeEndian.PutUint32(q.ctrl[12:], unix.UDP_SEGMENT)
	binary.NativeEndian.PutUint16(q.ctrl[16:], uint16(size))
	q.gso = unix.Msghdr{Name: q.msgs[0].hdr.Name, Namelen: q.msgs[0].hdr.Namelen, Iov: &q.iov[0], Control: &q.ctrl[0]}
	q.gso.SetIovlen(q.n)
	q.gso.SetControllen(gsoCtrl)
	// MSG_DONTWAIT on UDP never sleeps, so the raw form is safe (as for sendmmsg).
	_, _, e := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(q.out.out.fd), uintptr(unsafe.Pointer(&q.gso)), unix.MSG_DONTWAIT)
	switch e {
	case 0:
		gsoMessages.Add(1)
		gsoDatagrams.Add(uint64(q.n))
		return true
	case unix.EIO, unix.ENOPROTOOPT, unix.EOPNOTSUPP:
		gsoOff.Store(true) // no GSO here: not worth a failed syscall per batch
	}
	// EINVAL (a datagram larger than the path MTU allows a segment to be), EAGAIN: this batch
	// goes the ordinary way.
	return false
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

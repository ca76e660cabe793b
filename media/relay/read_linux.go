//go:build linux && (amd64 || arm64)

package relay

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvBatch is how many datagrams one recvmmsg may return. A short batch says,
// without a second syscall, that the queue was empty when the call returned,
// so the reader can park at once instead of paying for the recvfrom that
// would only have said EAGAIN; a full one goes out with one sendmmsg per
// destination socket (sendBatch) instead of one sendto per datagram.
const recvBatch = 8

// mmsghdr is struct mmsghdr on 64-bit Linux (msghdr, msg_len, padding).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// batchReader is the receive state a reader borrows while it runs: buffers,
// iovecs, source-address storage and the mmsghdr array pointing at them, all
// set up once.
type batchReader struct {
	msgs  [recvBatch]mmsghdr
	iov   [recvBatch]unix.Iovec
	names [recvBatch]unix.RawSockaddrInet6 // large enough for sockaddr_in too
	bufs  [recvBatch][readBuffer]byte
	send  sendBatch
}

// readers lends receive state to readers while they run: a parked reader
// holds no buffer, so an idle socket (most RTCP sockets, streams on hold)
// costs no buffer memory, and only about one batchReader per running thread
// is in use at a time.
var readers = sync.Pool{New: func() any { return newBatchReader() }}

func newBatchReader() *batchReader {
	r := new(batchReader)
	for i := range r.msgs {
		r.iov[i].Base = &r.bufs[i][0]
		r.iov[i].SetLen(readBuffer)
		r.msgs[i].hdr.Iov = &r.iov[i]
		r.msgs[i].hdr.SetIovlen(1)
		r.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	return r
}

// recv reads up to recvBatch datagrams without blocking.
func (r *batchReader) recv(fd uintptr) (int, unix.Errno) {
	for i := range r.msgs {
		r.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		r.msgs[i].hdr.Flags = 0
	}
	// recvmmsg on a non-blocking socket with MSG_DONTWAIT never sleeps, so the raw form
	// (no scheduler hand-off) is safe and saves the entersyscall/exitsyscall pair.
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), recvBatch, unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

// datagram returns datagram i of the last recv and its source address,
// IPv4-mapped IPv6 sources (dual-stack sockets bound to 0.0.0.0) unmapped so
// that they compare equal to the IPv4 addresses signalled in SDP.
func (r *batchReader) datagram(i int) ([]byte, netip.AddrPort, bool) {
	n := int(r.msgs[i].n)
	if n > readBuffer {
		n = readBuffer
	}
	sa := &r.names[i]
	var src netip.AddrPort
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		src = netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() && a.IsLinkLocalUnicast() {
			a = a.WithZone(zoneName(sa.Scope_id)) // replies need the interface
		}
		src = netip.AddrPortFrom(a, ntohs(sa.Port))
	default:
		return nil, src, false
	}
	return r.bufs[i][:n], src, true
}

// zoneNames caches the zone strings of small interface indexes, so that a
// link-local peer's packets do not allocate one each.
var zoneNames [256]atomic.Pointer[string]

// zoneName is the zone of a link-local source: the interface index in
// decimal, which the net package resolves like an interface name.
func zoneName(index uint32) string {
	if index >= uint32(len(zoneNames)) {
		return strconv.FormatUint(uint64(index), 10)
	}
	if z := zoneNames[index].Load(); z != nil {
		return *z
	}
	z := strconv.FormatUint(uint64(index), 10)
	zoneNames[index].Store(&z)
	return z
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// readLoop is the socket's only reader. It stays inside one RawConn.Read for
// the life of the stream: the callback drains the socket with recvmmsg and
// returns false (park until the netpoller sees the socket readable) as soon
// as a call returns fewer datagrams than it asked for, so a packet costs one
// receive and one send syscall instead of recvfrom, sendto and a recvfrom
// that says EAGAIN. Staying inside one Read matters: each new Read resets
// the poll descriptor and would lose a readiness edge seen in between.
func (s *Stream) readLoop(k *sock) {
	defer s.wg.Done()
	rc, err := k.conn.SyscallConn()
	if err != nil {
		s.readLoopPortable(k)
		return
	}
	drain := func(fd uintptr) bool {
		r := readers.Get().(*batchReader)
		for !s.closed.Load() {
			n, errno := r.recv(fd)
			if errno == unix.EINTR {
				continue
			}
			if errno != 0 {
				// EAGAIN: drained. Anything else is an error queued on the socket (none is
				// expected on an unconnected UDP socket) that the call consumed: wait too.
				readers.Put(r)
				return false
			}
			s.forwardBatch(k, r, n, mono())
			if n < recvBatch {
				readers.Put(r)
				return false
			}
		}
		readers.Put(r)
		return true
	}
	for !s.closed.Load() {
		if err := rc.Read(drain); err != nil {
			// Closed or past the deadline Close sets: the stream is ending. Read has no
			// other failure on a pollable socket; should one appear, stopping beats spinning.
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) && !s.closed.Load() {
				s.log.Error("relay reader stopped", "port", s.legs[k.side].pair.Port(), "rtcp", k.isRTCP, "error", err)
			}
			return
		}
	}
}

// fastPath describes the packet path for the pool's startup log.
const fastPath = "one reader goroutine per socket, recvmmsg (8) until a short read, raw sendto for one datagram (WriteToUDPAddrPort when the send buffer is full), one UDP GSO message for a burst of same-sized datagrams to one peer, sendmmsg for other batches; 0 allocs/packet"

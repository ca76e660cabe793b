package main

// Media engine: a few UDP sockets shared by every call. Each media endpoint of a call has its own
// loopback address (127.10.x.y for the caller, 127.20.x.y for the callee) on the port of its
// worker's socket for that stream kind; senders pick the source address of each packet with
// IP_PKTINFO, so one socket and one sendmmsg(2) carry a batch of packets of many calls, and one
// recvmmsg(2) reads a batch back (the destination address, from IP_PKTINFO, tells which endpoint
// it reached). Nothing on the per-packet path allocates.
//
// Video leaves as frames: a stream with a frame rate sends each frame's packets back to back at
// the frame's time, as an encoder's packetizer does, and with UDP GSO (UDP_SEGMENT) one message
// of the batch carries a whole frame of equal-sized packets: the kernel sends it through the
// stack as one buffer and splits it into datagrams where it is received, so the edge under test
// still gets one datagram per packet while the tool pays the stack's per-packet cost once per
// frame.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pion/rtp"
	"golang.org/x/sys/unix"
)

// t0 anchors the monotonic clock that senders stamp into payloads and receivers read back.
var t0 = time.Now()

func nowNs() int64 { return int64(time.Since(t0)) }

// Payload layout after the RTP header: magic, flow id, sequence, send time (ns since t0).
const (
	magic      = 0x434c4c44 // "CLLD"
	payloadMin = 24
	startupWin = 200 * time.Millisecond // packets scheduled in a flow's first 200 ms count as "startup"
	maxLag     = 100 * time.Millisecond // a packet this late (tool starved of CPU) is skipped, not burst out
	batchSize  = 64                     // messages per sendmmsg / recvmmsg
	pktinfoLen = 32                     // CMSG_SPACE(sizeof(struct in_pktinfo)) on 64-bit Linux
	segLen     = 24                     // CMSG_SPACE(sizeof(uint16)): the UDP_SEGMENT size
	maxSegs    = 16                     // packets per GSO message at most
	maxPkt     = 1500                   // bytes of one packet (receive buffers, GSO segments)
)

// streamKind describes one media type as offered in SDP and as sent.
type streamKind struct {
	idx   int    // position in the run's kinds: selects the socket
	media string // "audio" or "video"
	pt    uint8
	codec string // rtpmap value
	pps   int
	size  int    // whole RTP packet, bytes
	tsHz  uint32 // RTP clock
	fps   int    // frames per second: packets leave in per-frame bursts; 0: evenly paced
}

// due is how many packets of a stream of this kind are scheduled elapsed ns after its start:
// packet seq leaves at seq/pps s when evenly paced, or at the time of its frame,
// floor(seq*fps/pps)/fps s.
func (k *streamKind) due(elapsed int64) uint64 {
	pps := int64(k.pps)
	if k.fps <= 0 {
		return uint64(elapsed*pps/1e9) + 1
	}
	fps := int64(k.fps)
	frames := elapsed*fps/1e9 + 1
	return uint64(ceilDiv(frames*pps, fps))
}

// at is the time packet seq is scheduled, in ns after the stream's start (rounded up, as due
// counts a packet from the first whole ns at or after its time).
func (k *streamKind) at(seq uint64) int64 {
	if k.fps <= 0 {
		return ceilDiv(int64(seq)*1e9, int64(k.pps))
	}
	fps := int64(k.fps)
	return ceilDiv(int64(seq)*fps/int64(k.pps)*1e9, fps)
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// flow is one direction of one stream: a source endpoint and its destination. Sender fields are
// touched only by the owning sender goroutine, receive fields only by the receiver goroutine of
// the socket it arrives on (endpoints of one socket always arrive on it); both are read after the
// goroutines stopped.
type flow struct {
	id       uint32
	sock     *usock
	dst      unix.RawSockaddrInet4
	pktinfo  [pktinfoLen]byte // control message selecting the source address
	kind     *streamKind
	start    int64 // ns since t0
	total    uint64
	startupN uint64
	stop     atomic.Bool
	done     chan struct{}

	// sender side
	hdr                                  rtp.Header
	next, sent, sendErr, suSent, skipped uint64

	// receiver side
	owner                        atomic.Uint64 // endpoint key it was first received on, +1
	seen                         []uint64
	recv, suRecv, dup, reordered uint64
	maxSeq                       int64
}

// endpoint is one media address of a call: its own loopback IP on a shared socket's port.
type endpoint struct {
	ip   [4]byte
	port int
	sock *usock
}

func (ep *endpoint) addr() netip.Addr { return netip.AddrFrom4(ep.ip) }

// usock is one UDP socket bound to 0.0.0.0:port (it receives for every 127.x address).
type usock struct {
	fd   int
	port int
}

// portRange hands out endpoints of one side of the calls: a fresh loopback address each (round
// robin over 127.<net>.0.1 - 127.<net>.255.254) on the socket of a worker for the stream kind.
type portRange struct {
	eng  *engine
	net  byte
	next atomic.Uint32
	rr   atomic.Uint32
}

func newPortRange(eng *engine, net byte) *portRange { return &portRange{eng: eng, net: net} }

func (r *portRange) open(k *streamKind) (*endpoint, error) {
	n := r.next.Add(1)%65534 + 1
	w := int(r.rr.Add(1)) % len(r.eng.socks)
	s := r.eng.socks[w][k.idx]
	return &endpoint{ip: [4]byte{127, r.net, byte(n >> 8), byte(n)}, port: s.port, sock: s}, nil
}

// engine owns the sockets, the flow table, the sender and receiver goroutines.
type engine struct {
	flows  []atomic.Pointer[flow] // indexed by flow id (carried in every payload)
	nextID atomic.Uint32
	socks  [][]*usock // [worker][kind]

	senders   []*sender
	receivers []*receiver
	stopping  atomic.Bool
	stopAt    atomic.Int64
	toolDrops atomic.Uint64 // datagrams our own sockets dropped (receive buffer full)
	gso       bool          // frames leave as one UDP_SEGMENT message each
	wg        sync.WaitGroup
	stopOnce  sync.Once
}

// sender paces the flows of one worker and writes them with sendmmsg, one batch per socket.
type sender struct {
	mu      sync.Mutex
	pending []*flow
	flows   []*flow
	perSec  []uint64
	batches map[*usock]*mbatch
	calls   uint64 // sendmmsg calls (packets per call = sent / calls)
	msgs    uint64 // messages sent (more than one packet each with GSO)
}

// mbatch is one socket's batch of outgoing (or incoming) messages, with their buffers.
type mbatch struct {
	hdrs  [batchSize]mmsghdr
	iovs  [batchSize]unix.Iovec
	bufs  [batchSize][]byte // each entry's buffer: one packet, or up to maxSegs of them
	ctrl  [batchSize][pktinfoLen + segLen]byte
	names [batchSize]unix.RawSockaddrInet4
	flows [batchSize]*flow
	segs  [batchSize]int // packets in each message
	n     int
}

// newMbatch makes a batch whose messages hold up to bytes each, in one allocation.
func newMbatch(bytes int) *mbatch {
	b := &mbatch{}
	slab := make([]byte, batchSize*bytes)
	for i := range b.bufs {
		b.bufs[i] = slab[i*bytes : (i+1)*bytes : (i+1)*bytes]
	}
	return b
}

// mmsghdr is struct mmsghdr of Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

type receiver struct {
	sock               *usock
	perSec             []uint64
	hist               hist
	latMax             int64
	misrouted, garbage uint64
}

// newEngine opens workers × len(kinds) sockets on consecutive ports from basePort (0: any).
// With gso, frames of a stream kind with a frame rate leave as one UDP_SEGMENT message each.
func newEngine(maxFlows, workers int, kinds []*streamKind, basePort int, gso bool) (*engine, error) {
	e := &engine{flows: make([]atomic.Pointer[flow], maxFlows), gso: gso}
	for w := range workers {
		var row []*usock
		for ki := range kinds {
			port := 0 // basePort 0: any free ports (tests)
			if basePort > 0 {
				port = basePort + w*len(kinds) + ki
			}
			s, err := openSock(port)
			if err != nil {
				e.closeSocks()
				return nil, err
			}
			row = append(row, s)
			e.receivers = append(e.receivers, &receiver{sock: s})
		}
		e.socks = append(e.socks, row)
		e.senders = append(e.senders, &sender{batches: map[*usock]*mbatch{}})
	}
	if gso && unix.SetsockoptInt(e.socks[0][0].fd, unix.SOL_UDP, unix.UDP_SEGMENT, 0) != nil {
		e.gso = false // a kernel without UDP GSO (before 4.18): one message per packet
		slog.Warn("UDP GSO not available: video frames leave one message per packet")
	}
	for _, s := range e.senders {
		e.wg.Add(1)
		go s.run(e)
	}
	for _, r := range e.receivers {
		e.wg.Add(1)
		go r.run(e)
	}
	return e, nil
}

func openSock(port int) (*usock, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	for _, o := range []struct{ opt, val int }{
		{unix.SO_RCVBUFFORCE, 32 << 20}, {unix.SO_SNDBUFFORCE, 8 << 20}, // need CAP_NET_ADMIN; else:
	} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, o.val) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt-31, o.val) // SO_RCVBUF / SO_SNDBUF
		}
	}
	// Receives wake at least every 20 ms so a stopping engine is noticed.
	tv := unix.Timeval{Usec: 20_000}
	if err := errors.Join(unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1),
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv),
		unix.Bind(fd, &unix.SockaddrInet4{Port: port})); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("media socket on port %d: %w", port, err)
	}
	if port == 0 { // tests: the kernel picked
		sa, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		port = sa.(*unix.SockaddrInet4).Port
	}
	return &usock{fd: fd, port: port}, nil
}

func (e *engine) closeSocks() {
	for _, row := range e.socks {
		for _, s := range row {
			e.toolDrops.Add(socketDrops(s.fd))
			unix.Close(s.fd)
		}
	}
}

// watch and release are kept for the SIP code: endpoints share the engine's sockets.
func (e *engine) watch(*endpoint) error { return nil }
func (e *engine) release(*endpoint)     {}

// socketDrops reads the kernel's drop counter of one socket (SO_MEMINFO, SK_MEMINFO_DROPS).
func socketDrops(fd int) uint64 {
	var mi [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mi))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 || l < uint32(4*(unix.SK_MEMINFO_DROPS+1)) {
		return 0
	}
	return uint64(mi[unix.SK_MEMINFO_DROPS])
}

// send schedules a new flow from ep to dst starting at start (ns since t0) for hold.
func (e *engine) send(ep *endpoint, dst netip.AddrPort, k *streamKind, pt uint8, start int64, hold time.Duration) (*flow, error) {
	if !dst.Addr().Is4() || !dst.Addr().IsLoopback() {
		return nil, fmt.Errorf("refusing non-loopback media destination %s", dst)
	}
	if e.stopping.Load() {
		return nil, errors.New("media engine stopped")
	}
	id := e.nextID.Add(1) - 1
	if int(id) >= len(e.flows) {
		return nil, errors.New("flow table full")
	}
	total := uint64(hold.Seconds() * float64(k.pps))
	f := &flow{
		id: id, sock: ep.sock, kind: k, start: start, total: total, done: make(chan struct{}),
		dst:      unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().As4()},
		startupN: uint64(startupWin.Seconds()*float64(k.pps) + 0.999),
		hdr:      rtp.Header{Version: 2, PayloadType: pt, SSRC: rand.Uint32()},
		seen:     make([]uint64, (total+63)/64),
		maxSeq:   -1,
	}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&f.dst.Port))[:], dst.Port())
	// struct cmsghdr {len uint64; level, type int32} + struct in_pktinfo {ifindex; spec_dst; addr}
	binary.NativeEndian.PutUint64(f.pktinfo[0:], 16+12)
	binary.NativeEndian.PutUint32(f.pktinfo[8:], unix.IPPROTO_IP)
	binary.NativeEndian.PutUint32(f.pktinfo[12:], unix.IP_PKTINFO)
	copy(f.pktinfo[20:24], ep.ip[:]) // ipi_spec_dst: the source address to send from
	e.flows[id].Store(f)
	s := e.senders[0]
	for w, row := range e.socks {
		if row[k.idx] == ep.sock {
			s = e.senders[w]
		}
	}
	s.mu.Lock()
	s.pending = append(s.pending, f)
	s.mu.Unlock()
	return f, nil
}

// stop ends the flows still scheduled, waits for packets in flight (200 ms of silence, at most
// 2 s), stops every goroutine and closes the sockets.
func (e *engine) stop() {
	e.stopOnce.Do(func() {
		e.stopAt.Store(nowNs())
		e.stopping.Store(true)
		e.wg.Wait()
		e.closeSocks()
	})
}

func (s *sender) run(e *engine) {
	defer e.wg.Done()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		s.flows = append(s.flows, s.pending...)
		s.pending = s.pending[:0]
		s.mu.Unlock()
		if e.stopping.Load() {
			// drain: whatever is still scheduled ends now
			for _, f := range s.flows {
				close(f.done)
			}
			return
		}
		now := nowNs()
		for i := 0; i < len(s.flows); {
			f := s.flows[i]
			if f.next >= f.total || f.stop.Load() {
				close(f.done)
				s.flows[i] = s.flows[len(s.flows)-1]
				s.flows = s.flows[:len(s.flows)-1]
				continue
			}
			if now >= f.start {
				due := min(f.kind.due(now-f.start), f.total)
				for f.next < due {
					if now-f.start-f.kind.at(f.next) > int64(maxLag) {
						f.next++ // hopelessly late: a real-time source would not send it either
						f.skipped++
						continue
					}
					n := uint64(1)
					if e.gso && f.kind.fps > 0 {
						n = min(due-f.next, maxSegs)
					}
					s.packets(f, int(n))
				}
			}
			i++
		}
		for sock, b := range s.batches {
			s.flush(sock, b)
		}
		<-tick.C
	}
}

// packets adds the next n packets of f to its socket's batch as one message (n > 1: one UDP GSO
// message of n equal-sized datagrams), sending the batch when full.
func (s *sender) packets(f *flow, n int) {
	b := s.batches[f.sock]
	if b == nil {
		b = newMbatch(maxSegs * maxPkt)
		s.batches[f.sock] = b
	}
	i := b.n
	size := f.kind.size
	now := nowNs()
	for j := range n {
		seq := f.next
		f.next++
		f.hdr.SequenceNumber = uint16(seq)
		f.hdr.Timestamp = uint32(seq) * (f.kind.tsHz / uint32(f.kind.pps))
		buf := b.bufs[i][j*size : (j+1)*size]
		h, err := f.hdr.MarshalTo(buf)
		if err != nil { // a header that does not fit: never with the kinds the tool sends
			f.sendErr++
			n = j
			break
		}
		p := buf[h:]
		binary.BigEndian.PutUint32(p[0:], magic)
		binary.BigEndian.PutUint32(p[4:], f.id)
		binary.BigEndian.PutUint64(p[8:], seq)
		binary.BigEndian.PutUint64(p[16:], uint64(now))
		f.sent++
		if seq < f.startupN {
			f.suSent++
		}
		s.perSec = bump(s.perSec, now)
	}
	if n == 0 {
		return
	}
	b.names[i] = f.dst
	ctrl := &b.ctrl[i]
	*(*[pktinfoLen]byte)(ctrl[:]) = f.pktinfo
	clen := pktinfoLen
	if n > 1 {
		// struct cmsghdr {len uint64; level, type int32} + the segment size (uint16)
		c := ctrl[pktinfoLen:]
		binary.NativeEndian.PutUint64(c[0:], 16+2)
		binary.NativeEndian.PutUint32(c[8:], unix.SOL_UDP)
		binary.NativeEndian.PutUint32(c[12:], unix.UDP_SEGMENT)
		binary.NativeEndian.PutUint16(c[16:], uint16(size))
		clen += segLen
	}
	b.iovs[i] = unix.Iovec{Base: &b.bufs[i][0]}
	b.iovs[i].SetLen(n * size)
	h := &b.hdrs[i].hdr
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: unix.SizeofSockaddrInet4,
		Iov: &b.iovs[i], Control: &ctrl[0]}
	h.SetIovlen(1)
	h.SetControllen(clen)
	b.flows[i] = f
	b.segs[i] = n
	b.n++
	if b.n == batchSize {
		s.flush(f.sock, b)
	}
}

// flush writes the batch with sendmmsg until every message went or failed.
func (s *sender) flush(sock *usock, b *mbatch) {
	done := 0
	for done < b.n {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(sock.fd), uintptr(unsafe.Pointer(&b.hdrs[done])),
			uintptr(b.n-done), 0, 0, 0)
		s.calls++
		if errno == unix.EINTR || errno == unix.EAGAIN {
			continue
		}
		if errno != 0 || r == 0 {
			f := b.flows[done] // the first message failed: count its packets and go on with the rest
			f.sent -= uint64(b.segs[done])
			f.sendErr += uint64(b.segs[done])
			done++
			continue
		}
		done += int(r)
		s.msgs += uint64(r)
	}
	b.n = 0
}

func (r *receiver) run(e *engine) {
	defer e.wg.Done()
	b := newMbatch(maxPkt)
	for i := range batchSize {
		b.iovs[i] = unix.Iovec{Base: &b.bufs[i][0]}
		b.iovs[i].SetLen(len(b.bufs[i]))
	}
	var h rtp.Header
	idle := 0
	for {
		// Once stopping, wait for 200 ms of silence (packets still in flight), at most 2 s.
		if e.stopping.Load() && (idle > 10 || nowNs()-e.stopAt.Load() > 2e9) {
			return
		}
		for i := range batchSize {
			m := &b.hdrs[i].hdr
			*m = unix.Msghdr{Iov: &b.iovs[i], Control: &b.ctrl[i][0]}
			m.SetIovlen(1)
			m.SetControllen(pktinfoLen)
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.sock.fd), uintptr(unsafe.Pointer(&b.hdrs[0])),
			batchSize, unix.MSG_WAITFORONE, 0, 0)
		if errno != 0 || n == 0 {
			if errno == unix.EAGAIN || errno == unix.EINTR || errno == 0 {
				idle++
				continue
			}
			return
		}
		idle = 0
		now := nowNs()
		for i := range int(n) {
			m := &b.hdrs[i]
			var dst [4]byte // ipi_addr of IP_PKTINFO: which endpoint the packet reached
			if m.hdr.Controllen >= 28 && binary.NativeEndian.Uint32(b.ctrl[i][8:]) == unix.IPPROTO_IP &&
				binary.NativeEndian.Uint32(b.ctrl[i][12:]) == unix.IP_PKTINFO {
				copy(dst[:], b.ctrl[i][24:28])
			}
			key := uint64(binary.BigEndian.Uint32(dst[:]))<<16 | uint64(r.sock.port)
			r.packet(e, key, b.bufs[i][:m.len], &h, now)
		}
	}
}

func (r *receiver) packet(e *engine, key uint64, b []byte, h *rtp.Header, now int64) {
	n, err := h.Unmarshal(b)
	if err != nil || len(b)-n < payloadMin {
		r.garbage++
		return
	}
	p := b[n:]
	id := binary.BigEndian.Uint32(p[4:])
	if binary.BigEndian.Uint32(p) != magic || int(id) >= len(e.flows) {
		r.garbage++
		return
	}
	f := e.flows[id].Load()
	if f == nil {
		r.garbage++
		return
	}
	if o := f.owner.Load(); o != key+1 {
		if o != 0 || !f.owner.CompareAndSwap(0, key+1) {
			r.misrouted++ // this flow was first received on another endpoint
			return
		}
	}
	seq := binary.BigEndian.Uint64(p[8:])
	if seq >= f.total {
		r.garbage++
		return
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if f.seen[w]&bit != 0 {
		f.dup++
		return
	}
	f.seen[w] |= bit
	f.recv++
	if seq < f.startupN {
		f.suRecv++
	}
	if int64(seq) < f.maxSeq {
		f.reordered++
	} else {
		f.maxSeq = int64(seq)
	}
	lat := now - int64(binary.BigEndian.Uint64(p[16:]))
	r.hist.add(lat)
	r.latMax = max(r.latMax, lat)
	r.perSec = bump(r.perSec, now)
}

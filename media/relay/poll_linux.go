//go:build linux && (amd64 || arm64)

package relay

import (
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The pollers are rtpengine's model: a few workers, each an OS thread
// (runtime.LockOSThread) blocked in epoll_wait on its own epoll descriptor,
// serve the sockets of every stream. A stream's sockets are registered with one
// worker when it starts (level-triggered, the event's data is the socket's
// slot in a table), and a ready socket is drained with the same recvmmsg and
// forwardBatch as the per-socket reader. Waking one thread that then serves
// every socket ready at that moment replaces a goroutine parked per socket,
// woken through the netpoller and the scheduler per datagram.
const (
	maxPollers   = 4  // workers at most (rtpengine's default is one per CPU)
	pollEvents   = 64 // events one epoll_wait returns at most
	pollBatches  = 8  // recvmmsg calls per socket per wake-up (fairness: level-triggered brings it back)
	slotChunk    = 1024
	slotChunks   = 256 // 262,144 sockets at most; past that, per-socket readers
	pollIdle     = 0   // sock poll states
	pollBusy     = 1
	pollDead     = 2
	pollCloseNap = 20 * time.Microsecond
)

// usePollers switches the pollers off (tests of the per-socket reader).
var usePollers = true

// pollState is a socket's registration with a poller.
type pollState struct {
	w     *poller
	slot  uint32
	state atomic.Int32 // pollIdle, pollBusy (a worker drains it), pollDead (unregistered)
}

// poller is one worker: its epoll descriptor, the events of the last wait and
// the receive state it drains sockets with.
type poller struct {
	epfd   int
	events [pollEvents]unix.EpollEvent
	r      *batchReader
}

// pollSet is the process's workers and the slot table their events index.
type pollSet struct {
	workers []*poller
	next    atomic.Uint32
	chunks  [slotChunks]atomic.Pointer[[slotChunk]atomic.Pointer[sock]]
	mu      sync.Mutex // slot allocation
	free    []uint32
	used    uint32
}

var (
	pollersOnce sync.Once
	pollers     *pollSet // nil: epoll unavailable (per-socket readers)
)

// StartPollers starts the workers that serve every stream's sockets, if they
// are not running yet: a pool does when it is created. Tests that count
// goroutines call it first, so that the workers do not count as a leak.
func StartPollers() {
	if usePollers {
		startPollers()
	}
}

// startPollers creates the workers once; nil when epoll cannot be set up.
func startPollers() *pollSet {
	pollersOnce.Do(func() {
		n := min(runtime.NumCPU(), maxPollers)
		if v, err := strconv.Atoi(os.Getenv("PORTCULLIS_RELAY_POLLERS")); err == nil && v > 0 { // experiment knob (bench)
			n = v
		}
		ps := &pollSet{}
		for range n {
			fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
			if err != nil {
				slog.Warn("relay pollers unavailable; one reader per socket", "error", err)
				for _, w := range ps.workers {
					_ = unix.Close(w.epfd)
				}
				return
			}
			ps.workers = append(ps.workers, &poller{epfd: fd, r: newBatchReader()})
		}
		for _, w := range ps.workers {
			go w.run(ps)
		}
		pollers = ps
	})
	return pollers
}

// slot returns the socket registered in slot i, nil if none.
func (ps *pollSet) slot(i uint32) *sock {
	c := ps.chunks[i/slotChunk].Load()
	if c == nil {
		return nil
	}
	return c[i%slotChunk].Load()
}

// take puts k into a free slot; false when the table is full.
func (ps *pollSet) take(k *sock) (uint32, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var i uint32
	switch {
	case len(ps.free) > 0:
		i = ps.free[len(ps.free)-1]
		ps.free = ps.free[:len(ps.free)-1]
	case ps.used < slotChunk*slotChunks:
		i = ps.used
		ps.used++
		if i%slotChunk == 0 {
			ps.chunks[i/slotChunk].Store(new([slotChunk]atomic.Pointer[sock]))
		}
	default:
		return 0, false
	}
	ps.chunks[i/slotChunk].Load()[i%slotChunk].Store(k)
	return i, true
}

func (ps *pollSet) release(i uint32) {
	ps.mu.Lock()
	ps.chunks[i/slotChunk].Load()[i%slotChunk].Store(nil)
	ps.free = append(ps.free, i)
	ps.mu.Unlock()
}

// pollStart registers the stream's sockets with one worker; a socket that
// cannot be registered gets its own reader goroutine.
func (s *Stream) pollStart() {
	var ps *pollSet
	if usePollers {
		ps = startPollers()
	}
	var w *poller
	if ps != nil {
		w = ps.workers[int(ps.next.Add(1))%len(ps.workers)]
	}
	for i := range s.legs {
		for _, k := range []*sock{&s.legs[i].rtp, &s.legs[i].rtcp} {
			if w == nil || !ps.add(w, k) {
				s.wg.Add(1)
				go s.readLoop(k)
			}
		}
	}
}

// add registers k with w and takes k's socket out of the runtime's netpoller:
// while any Go conn of a socket is open, every datagram also wakes the thread
// blocked in the runtime's epoll_wait (one context switch per datagram, as
// much as the pollers save). So the socket is served through a duplicate of
// its descriptor and its conn is closed; pollStop hands the pair a new conn.
func (ps *pollSet) add(w *poller, k *sock) bool {
	if k.out.family == 0 {
		return false
	}
	orig := k.out.fd
	nfd, err := unix.FcntlInt(uintptr(orig), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return false
	}
	k.out.fd, k.out.raw, k.poll.w = nfd, true, w
	i, ok := ps.take(k) // publishes k to the workers
	if ok {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		if err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, nfd, &ev); err == nil {
			k.poll.slot = i
			_ = k.conn.Close()
			return true
		}
		k.waitIdle() // a stale event of the slot's last socket may be draining k
		ps.release(i)
		k.poll.state.Store(pollIdle)
	}
	_ = unix.Close(nfd)
	k.out.fd, k.out.raw, k.poll.w = orig, false, nil
	return false
}

// waitIdle marks k dead once no worker drains it.
func (k *sock) waitIdle() {
	for !k.poll.state.CompareAndSwap(pollIdle, pollDead) {
		time.Sleep(pollCloseNap)
	}
}

// pollStop unregisters the stream's polled sockets and returns once no worker
// uses them, their pairs holding new conns on the same sockets: after it the
// pairs may be released to the pool.
func (s *Stream) pollStop() {
	polled := false
	for i := range s.legs {
		for _, k := range []*sock{&s.legs[i].rtp, &s.legs[i].rtcp} {
			if k.poll.w == nil {
				continue
			}
			polled = true
			_ = unix.EpollCtl(k.poll.w.epfd, unix.EPOLL_CTL_DEL, k.out.fd, nil)
			// A worker may hold an event for k from before the DEL: it drains k only
			// after moving k from idle to busy, which fails once k is dead.
			k.waitIdle()
		}
	}
	if !polled {
		return
	}
	// Only now may a descriptor close: a worker draining one socket sends from the others.
	for i := range s.legs {
		l := &s.legs[i]
		for _, k := range []*sock{&l.rtp, &l.rtcp} {
			if k.poll.w != nil {
				pollers.release(k.poll.slot)
			}
		}
		l.pair.replace(reattach(&l.rtp), reattach(&l.rtcp))
	}
}

// reattach returns a conn on k's socket, closing k's descriptor: k's own conn
// if k was not polled, nil if no conn can be made (the socket is then closed:
// its port frees up without draining).
func reattach(k *sock) *net.UDPConn {
	if k.poll.w == nil {
		return k.conn
	}
	f := os.NewFile(uintptr(k.out.fd), "relay")
	c, err := net.FilePacketConn(f)
	_ = f.Close()
	if uc, ok := c.(*net.UDPConn); ok && err == nil {
		_ = uc.SetReadBuffer(socketBuffer)
		return uc
	}
	if c != nil {
		_ = c.Close()
	}
	return nil
}

// run is a worker: wait, drain every ready socket, again.
func (w *poller) run(ps *pollSet) {
	runtime.LockOSThread()
	spin := int64(pollSpin)
	for {
		n := w.poll(0)
		if n == 0 {
			n = w.spinWait(spin)
		}
		if n < 0 {
			return
		}
		for i := range n {
			k := ps.slot(uint32(w.events[i].Fd))
			// A stale event (the socket closed meanwhile, its slot taken again) finds the
			// socket dead, or drains a live one that its own worker then finds empty.
			if k == nil || !k.poll.state.CompareAndSwap(pollIdle, pollBusy) {
				continue
			}
			k.s.drainPolled(k, w.r)
			k.poll.state.Store(pollIdle)
		}
	}
}

// pollSpin is how long (ns) a worker that found nothing ready polls again
// before it sleeps in epoll_wait.
var pollSpin = func() time.Duration {
	if v, err := strconv.Atoi(os.Getenv("PORTCULLIS_RELAY_SPIN")); err == nil { // experiment knob (bench)
		return time.Duration(v) * time.Microsecond
	}
	return 0
}()

// spinWait polls without sleeping for up to spin ns, then waits in epoll_wait.
func (w *poller) spinWait(spin int64) int {
	if spin > 0 {
		for end := mono() + spin; mono() < end; {
			if n := w.poll(0); n != 0 {
				return n
			}
		}
	}
	return w.poll(-1)
}

// poll is epoll_wait: the raw form (no scheduler hand-off) when it does not
// sleep. It returns -1 when the descriptor fails (never expected).
func (w *poller) poll(timeout int) int {
	for {
		var n int
		var err error
		if timeout == 0 {
			r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(w.epfd), uintptr(unsafe.Pointer(&w.events[0])), pollEvents, 0, 0, 0)
			n = int(r)
			if e != 0 {
				err = e
			}
		} else {
			n, err = unix.EpollWait(w.epfd, w.events[:], timeout)
		}
		if err == nil {
			return n
		}
		if err != unix.EINTR {
			slog.Error("relay poller stopped", "error", err)
			return -1
		}
	}
}

// drainPolled reads k until a short batch, for at most pollBatches batches.
func (s *Stream) drainPolled(k *sock, r *batchReader) {
	fd := uintptr(k.out.fd)
	for range pollBatches {
		if s.closed.Load() {
			return
		}
		n, errno := r.recv(fd)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return // EAGAIN: drained (or an error the call consumed)
		}
		s.forwardBatch(k, r, n, mono())
		if n < recvBatch {
			return
		}
	}
}

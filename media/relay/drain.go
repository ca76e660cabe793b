package relay

import (
	"sync"
	"time"
)

// reapSlack is how late past its drain a released pair may be closed, so that
// one wake of the reaper closes the pairs of many calls at a high call rate
// instead of one wake per pair.
const reapSlack = 10 * time.Millisecond

// drainQueue holds the released pairs waiting out their drain, in release
// order. Every pair drains for the same time, so that is also deadline order
// and only the head's deadline matters. One reaper goroutine per pool (started
// when the queue fills, gone when it empties) closes them: a released pair
// costs no goroutine and is not read; what reaches its sockets queues in the
// kernel (which drops the overflow) and is discarded by the close, so a later
// call on the same ports never receives it.
type drainQueue struct {
	items   []draining
	head    int
	running bool
	stop    chan struct{} // closed by the pool's Close
	wg      sync.WaitGroup
}

type draining struct {
	pr    *Pair
	until time.Time
}

// drainLocked queues a released pair until its deadline and starts the reaper
// if none runs. p.mu is held.
func (p *Pool) drainLocked(pr *Pair, until time.Time) {
	q := &p.drain
	q.items = append(q.items, draining{pr: pr, until: until})
	if q.running {
		return
	}
	if q.stop == nil {
		q.stop = make(chan struct{})
	}
	q.running = true
	q.wg.Add(1)
	go p.reap(q.stop)
}

// stopLocked ends the reaper and frees the pairs still queued (the pool's
// Close has closed their sockets). p.mu is held.
func (q *drainQueue) stopLocked() {
	if q.stop != nil {
		select {
		case <-q.stop:
		default:
			close(q.stop)
		}
	}
	for _, d := range q.items[q.head:] {
		d.pr.pool.freeLocked(d.pr)
	}
	q.items, q.head = nil, 0
}

// dueLocked moves the queued pairs whose drain is over into due and returns it
// with how long until the next deadline (ok false when the queue is empty).
// p.mu is held.
func (q *drainQueue) dueLocked(now time.Time, due []*Pair) (_ []*Pair, wait time.Duration, ok bool) {
	for q.head < len(q.items) && !q.items[q.head].until.After(now) {
		due = append(due, q.items[q.head].pr)
		q.items[q.head] = draining{}
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		return due, 0, false
	}
	if q.head > len(q.items)/2 { // keep the backing array from growing without bound
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return due, q.items[q.head].until.Sub(now), true
}

// reap closes each queued pair when its drain is over (a little after, see
// reapSlack) and frees its ports; it returns when the queue is empty or the
// pool closes.
func (p *Pool) reap(stop <-chan struct{}) {
	defer p.drain.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*Pair
	for {
		p.mu.Lock()
		var wait time.Duration
		var more bool
		due, wait, more = p.drain.dueLocked(time.Now(), due[:0])
		if !more && len(due) == 0 {
			p.drain.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		if len(due) > 0 {
			for _, pr := range due {
				pr.closeSockets() // outside the lock: Acquire need not wait for the syscalls
			}
			p.mu.Lock()
			for _, pr := range due {
				p.freeLocked(pr)
			}
			p.mu.Unlock()
			clear(due)
			continue
		}
		timer.Reset(wait + reapSlack)
		select {
		case <-timer.C:
		case <-stop:
			return
		}
	}
}

// freeLocked marks a closed pair's ports free, unless they were handed out
// again already. p.mu is held.
func (p *Pool) freeLocked(pr *Pair) {
	if p.pairs[pr.idx] == pr {
		p.states[pr.idx] = stateFree
		p.pairs[pr.idx] = nil
	}
}

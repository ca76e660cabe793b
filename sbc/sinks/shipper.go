package sinks

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// sender delivers a batch as a whole or fails; a failed batch is sent again whole.
type sender interface {
	send(ctx context.Context, items []Item) error
	Close() error
}

// LeaderFunc runs fn every interval while this node is the cluster leader, with a context
// cancelled when leadership is lost (cluster.Node.RunLeaderTask). It does not block.
type LeaderFunc func(ctx context.Context, interval time.Duration, fn func(ctx context.Context))

// Options are what a Shipper needs from the node.
type Options struct {
	Node  string      // this node's ID: the syslog HOSTNAME and part of event dedup keys
	Store state.Store // records and cursors
	// Leader runs the record shippers on the leader only. Nil: this node always ships
	// (a store no other node shares).
	Leader LeaderFunc
	// Poll is how often the leader looks for new records. Default 200ms.
	Poll   time.Duration
	Logger *slog.Logger // rate-limited by the caller: delivery failures repeat
}

// Shipper delivers call records and security events to the configured sinks.
type Shipper struct {
	opts  Options
	sinks []*sink
	boot  int64 // this life's start, in event dedup keys
	evSeq atomic.Uint64

	wg sync.WaitGroup
}

type sink struct {
	spec Spec
	out  sender
	// queue holds security events waiting for delivery (bounded by Spec.Queue).
	queue chan Item
	// shipped is the last record this node delivered (the replicated cursor may lag it).
	shipped   atomic.Uint64
	delivered [numStreams]atomic.Uint64
	dropped   [numStreams]atomic.Uint64
	failures  atomic.Uint64
}

// New builds the sinks; nothing is sent until Run.
func New(specs []Spec, opts Options) (*Shipper, error) {
	if opts.Poll <= 0 {
		opts.Poll = 200 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Shipper{opts: opts, boot: time.Now().UnixNano()}
	seen := map[string]bool{}
	for _, sp := range specs {
		if err := sp.check(); err != nil {
			s.Close()
			return nil, err
		}
		if seen[sp.Name] {
			s.Close()
			return nil, fmt.Errorf("%w: sink %q is listed twice", ErrBadSpec, sp.Name)
		}
		seen[sp.Name] = true
		sp = sp.withDefaults()
		var (
			out sender
			err error
		)
		switch sp.Kind {
		case KindSyslog:
			out = newSyslog(sp, opts.Node)
		case KindWebhook:
			out, err = newWebhook(sp)
		case KindFile:
			out, err = newFile(sp)
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		k := &sink{spec: sp, out: out}
		if sp.Events {
			k.queue = make(chan Item, sp.Queue)
		}
		s.sinks = append(s.sinks, k)
	}
	return s, nil
}

// Run starts shipping: records from the leader (see Options.Leader), events from events (nil:
// none) until ctx ends. It returns at once.
func (s *Shipper) Run(ctx context.Context, events <-chan guard.Event) {
	for _, k := range s.sinks {
		if k.spec.Records {
			if s.opts.Leader != nil {
				s.opts.Leader(ctx, s.opts.Poll, func(lctx context.Context) { s.catchUp(lctx, k) })
			} else {
				s.goLoop(ctx, func() {
					t := time.NewTicker(s.opts.Poll)
					defer t.Stop()
					for {
						s.catchUp(ctx, k)
						select {
						case <-ctx.Done():
							return
						case <-t.C:
						}
					}
				})
			}
		}
		if k.spec.Events {
			s.goLoop(ctx, func() { s.sendEvents(ctx, k) })
		}
	}
	if events != nil {
		s.goLoop(ctx, func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-events:
					if !ok {
						return
					}
					s.Publish(ev)
				}
			}
		})
	}
}

func (s *Shipper) goLoop(ctx context.Context, f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Publish queues a security event for every sink that ships events. It never blocks: a sink
// whose queue is full drops the event and counts it.
func (s *Shipper) Publish(ev guard.Event) {
	var it Item
	for _, k := range s.sinks {
		if k.queue == nil {
			continue
		}
		if it.ID == "" {
			it = eventItem(fmt.Sprintf("event-%s-%x-%d", s.opts.Node, s.boot, s.evSeq.Add(1)), s.opts.Node, ev)
		}
		select {
		case k.queue <- it:
		default:
			k.dropped[Events].Add(1)
		}
	}
}

// catchUp ships every record after the sink's cursor, batch by batch, while ctx lives.
func (s *Shipper) catchUp(ctx context.Context, k *sink) {
	st := s.opts.Store.State()
	for ctx.Err() == nil {
		cur := max(st.SinkCursor(k.spec.Name), k.shipped.Load())
		recs := st.Records(state.RecordQuery{AfterSeq: cur, Limit: k.spec.Batch})
		if len(recs) == 0 {
			return
		}
		if gap := recs[0].Seq - cur - 1; gap > 0 {
			// The record log was trimmed past records this sink never got.
			k.dropped[Records].Add(gap)
			s.opts.Logger.Warn("sink missed call records trimmed from the state", "sink", k.spec.Name,
				"after", cur, "missed", gap)
		}
		items := make([]Item, len(recs))
		for i, r := range recs {
			items[i] = recordItem(s.opts.Node, r)
		}
		if !s.deliver(ctx, k, items) {
			return
		}
		last := recs[len(recs)-1].Seq
		k.shipped.Store(last)
		k.delivered[Records].Add(uint64(len(items)))
		s.opts.Store.Enqueue(state.SinkCursor(k.spec.Name, last))
	}
}

// sendEvents delivers queued events in batches until ctx ends.
func (s *Shipper) sendEvents(ctx context.Context, k *sink) {
	batch := make([]Item, 0, k.spec.Batch)
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-k.queue:
			batch = append(batch[:0], it)
		}
	fill:
		for len(batch) < k.spec.Batch {
			select {
			case it := <-k.queue:
				batch = append(batch, it)
			default:
				break fill
			}
		}
		if !s.deliver(ctx, k, batch) {
			return
		}
		k.delivered[Events].Add(uint64(len(batch)))
	}
}

// deliver sends items, retrying with doubling backoff until it succeeds (true) or ctx ends.
func (s *Shipper) deliver(ctx context.Context, k *sink, items []Item) bool {
	wait := k.spec.RetryMin
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, k.spec.Timeout)
		err := k.out.send(actx, items)
		cancel()
		if err == nil {
			if attempt > 1 {
				s.opts.Logger.Info("sink delivers again", "sink", k.spec.Name, "attempts", attempt)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		k.failures.Add(1)
		s.opts.Logger.Warn("sink delivery failed, retrying", "sink", k.spec.Name, "kind", k.spec.Kind,
			"attempt", attempt, "retry_in", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(wait*2, k.spec.RetryMax)
	}
}

// Stats are one sink's counters.
type Stats struct {
	Name      string
	Delivered [numStreams]uint64 // indexed by Stream
	Dropped   [numStreams]uint64
	Failures  uint64 // failed delivery attempts
	Lag       uint64 // call records not yet delivered (0 for a sink without records)
	Queued    int    // events waiting
}

// Stats returns the counters of every sink, in configuration order.
func (s *Shipper) Stats() []Stats {
	st := s.opts.Store.State()
	last := st.LastRecordSeq()
	out := make([]Stats, len(s.sinks))
	for i, k := range s.sinks {
		o := Stats{Name: k.spec.Name, Failures: k.failures.Load()}
		for j := range numStreams {
			o.Delivered[j], o.Dropped[j] = k.delivered[j].Load(), k.dropped[j].Load()
		}
		if k.spec.Records {
			if cur := max(st.SinkCursor(k.spec.Name), k.shipped.Load()); last > cur {
				o.Lag = last - cur
			}
		}
		if k.queue != nil {
			o.Queued = len(k.queue)
		}
		out[i] = o
	}
	return out
}

// Wait waits for the loops started by Run to end (after its ctx ended).
func (s *Shipper) Wait() { s.wg.Wait() }

// Close closes every sink's connection or file. Call it after Run's ctx ended.
func (s *Shipper) Close() error {
	var first error
	for _, k := range s.sinks {
		if err := k.out.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

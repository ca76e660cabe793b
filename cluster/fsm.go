package cluster

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// fsm applies the Raft log to a state.State. Raft calls it from one goroutine (Apply, ApplyBatch,
// Snapshot, Restore never run concurrently), so only the fields read from outside are atomic.
type fsm struct {
	st  *state.State
	log *slog.Logger
	// onHalt is called once, from the FSM goroutine, when a command cannot be applied; it must
	// not block on Raft (the node shuts Raft down from another goroutine).
	onHalt func(error)
	// before, when set, runs before each batch (tests hold a node behind the log).
	before func()

	halted  atomic.Pointer[error]
	lastCmd atomic.Uint64 // index of the last command or configuration entry applied
	applied atomic.Uint64 // commands applied (diagnostics)
	batches atomic.Uint64 // batch entries applied (group commit, diagnostics)

	mu      sync.Mutex
	waiters []indexWaiter // woken when lastCmd reaches their index
}

type indexWaiter struct {
	index uint64
	ch    chan struct{}
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

func newFSM(st *state.State, log *slog.Logger, onHalt func(error)) *fsm {
	return &fsm{st: st, log: log, onHalt: onHalt}
}

// Apply applies one entry; Raft uses ApplyBatch, this is for completeness.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in order. The response for a command is the error from
// state.Apply (nil on success), or a []error for a batch entry; a fatal error halts the node and
// every later entry answers ErrHalted without touching the state.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	if f.before != nil {
		f.before()
	}
	out := make([]any, len(logs))
	var last uint64
	for i, l := range logs {
		if h := f.halted.Load(); h != nil {
			out[i] = *h
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue // configuration entries only move the index
		}
		res, err := f.applyEntry(l.Data)
		if err != nil {
			herr := fmt.Errorf("%w: entry %d (term %d): %w", ErrHalted, l.Index, l.Term, err)
			f.halted.Store(&herr)
			last = l.Index - 1
			out[i] = herr
			f.log.Error("CANNOT APPLY REPLICATED LOG: stopping this node so its state does not diverge; "+
				"upgrade the binary and restart", "index", l.Index, "term", l.Term, "error", err)
			if f.onHalt != nil {
				f.onHalt(herr)
			}
			continue
		}
		out[i] = res
	}
	if last > 0 {
		f.advance(last)
	}
	return out
}

// applyEntry applies one command entry. The response is the error from state.Apply (nil on
// success), or for a batch entry a []error with one result per inner command. A non-nil second
// result is fatal: the node cannot follow the log.
func (f *fsm) applyEntry(data []byte) (any, error) {
	c, err := state.DecodeCommand(data)
	if err != nil {
		return nil, err
	}
	if c.Type != state.CmdBatch {
		return f.applyOne(c)
	}
	inner, err := state.DecodeBatch(c.Version, c.Payload)
	if err != nil {
		return nil, err // a leader wrote it: a bad batch is as fatal as an unknown command
	}
	f.batches.Add(1)
	errs := make([]error, len(inner))
	for j, b := range inner {
		ic, err := state.DecodeCommand(b)
		if err != nil {
			return nil, err
		}
		if errs[j], err = f.applyOne(ic); err != nil {
			return nil, err
		}
	}
	return errs, nil
}

// applyOne applies one command: the first result is its outcome, the second a fatal error.
func (f *fsm) applyOne(c state.Command) (error, error) {
	err := f.st.Apply(c)
	if err != nil && state.Fatal(err) {
		return nil, err
	}
	f.applied.Add(1)
	return err, nil
}

func (f *fsm) advance(idx uint64) {
	f.lastCmd.Store(idx)
	f.mu.Lock()
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		if w.index <= idx {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	f.waiters = keep
	f.mu.Unlock()
}

// waitIndex returns a channel closed once the FSM has applied every command up to idx.
func (f *fsm) waitIndex(idx uint64) <-chan struct{} {
	ch := make(chan struct{})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastCmd.Load() >= idx {
		close(ch)
		return ch
	}
	f.waiters = append(f.waiters, indexWaiter{idx, ch})
	return ch
}

// haltErr returns the error that halted the FSM, or nil.
func (f *fsm) haltErr() error {
	if h := f.halted.Load(); h != nil {
		return *h
	}
	return nil
}

// Snapshot freezes the state (cheap: a copy of the maps under the read lock).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.haltErr(); err != nil {
		return nil, err // never persist a state that skipped entries
	}
	return &fsmSnapshot{frozen: f.st.Freeze(), lastCmd: f.lastCmd.Load()}, nil
}

// Restore replaces the state with a snapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	start := time.Now()
	br := bufio.NewReaderSize(rc, 64<<10)
	lastCmd, body, err := openSnapshot(br)
	if err != nil {
		return err
	}
	if err := f.st.Restore(body); err != nil {
		return err
	}
	f.advance(lastCmd)
	f.log.Info("restored snapshot", "last_index", lastCmd, "took", time.Since(start), "counts", f.st.Counts())
	return nil
}

// Snapshot encoding: "PCS1", the index of the last command applied (8 bytes, big endian), then
// the canonical JSON of the state, gzip-compressed (JSON of call records compresses ~10x).
const snapMagic = "PCS1"

type fsmSnapshot struct {
	frozen  *state.Frozen
	lastCmd uint64
}

// Persist encodes the frozen state to the sink (the I/O part, off the FSM goroutine).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.frozen, s.lastCmd); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

func writeSnapshot(w io.Writer, fr *state.Frozen, lastCmd uint64) error {
	var hdr [12]byte
	copy(hdr[:4], snapMagic)
	binary.BigEndian.PutUint64(hdr[4:], lastCmd)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(zw, 64<<10)
	if _, err := fr.WriteTo(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

func openSnapshot(r io.Reader) (uint64, io.Reader, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: header: %v", state.ErrBadSnapshot, err)
	}
	if string(hdr[:4]) != snapMagic {
		return 0, nil, fmt.Errorf("%w: not a Portcullis snapshot", state.ErrBadSnapshot)
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", state.ErrBadSnapshot, err)
	}
	return binary.BigEndian.Uint64(hdr[4:]), zr, nil
}

package state

import (
	"errors"
	"fmt"
)

// Writes applied once (issue #15: forwarded writes retried on a new leader). A node that
// proposes a write whose outcome it cannot learn (the leader applied it, then died or froze
// before answering) sends it again to the next leader. For a write that appends (a call
// record, an audit line), that is a second record; for one that deletes, a second "not found"
// answered for a write that worked; for a PutCall, a call revived after another node ended it.
//
// So the proposer wraps each such command in a CmdOnce envelope carrying an id that it keeps
// for every retry. Apply remembers the ids of the last OnceKeep envelopes it applied, with
// their results: an envelope seen before changes nothing and answers what the first one did.
// The memory is part of the state (snapshots carry it), so every node, a restarted one too,
// skips the same duplicates. A retry older than OnceKeep later writes would apply again: the
// proposer only retries within its apply timeout (seconds), far inside that window.

// CmdOnce is an envelope: a 16-byte id, then an encoded command (never a batch or another
// envelope). Never renumber. It is not ignorable: skipping it would skip the command inside. A
// leader writes it only once every member said it applies it (cluster log formats).
const CmdOnce CmdType = 48

// OnceKeep is how many envelope ids the state remembers.
const OnceKeep = 16384

const onceVersion = 1

// OnceID names one write across its retries.
type OnceID [16]byte

func init() {
	if old, ok := cmdNames[CmdOnce]; ok { // two branches took the same number
		panic(fmt.Sprintf("state: command type %d is both %s and once", uint8(CmdOnce), old))
	}
	cmdNames[CmdOnce] = "once"
}

// WrapOnce returns the envelope of the encoded command enc with id.
func WrapOnce(id OnceID, enc []byte) []byte {
	b := make([]byte, 0, 2+len(id)+len(enc))
	b = append(b, byte(CmdOnce), onceVersion)
	b = append(b, id[:]...)
	return append(b, enc...)
}

// UnwrapOnce returns the command inside an envelope made by WrapOnce (aliasing b) and true, or
// b and false when b is not an envelope.
func UnwrapOnce(b []byte) ([]byte, bool) {
	if len(b) < 2+len(OnceID{}) || CmdType(b[0]) != CmdOnce {
		return b, false
	}
	return b[2+len(OnceID{}):], true
}

// onceResult is the remembered outcome of an applied envelope: nil, or its error's message
// and the sentinel it wrapped.
type onceResult struct {
	kind onceKind
	msg  string
}

type onceKind uint8

const (
	onceOK onceKind = iota
	onceNotFound
	onceBadPayload
	onceOther
)

func resultOf(err error) onceResult {
	switch {
	case err == nil:
		return onceResult{}
	case errors.Is(err, ErrNotFound):
		return onceResult{onceNotFound, err.Error()}
	case errors.Is(err, ErrBadPayload):
		return onceResult{onceBadPayload, err.Error()}
	}
	return onceResult{onceOther, err.Error()}
}

func (r onceResult) err() error {
	switch r.kind {
	case onceOK:
		return nil
	case onceNotFound:
		return &onceErr{r.msg, ErrNotFound}
	case onceBadPayload:
		return &onceErr{r.msg, ErrBadPayload}
	}
	return &onceErr{r.msg, nil}
}

// onceErr is the error a duplicate envelope answers: the first application's.
type onceErr struct {
	msg      string
	sentinel error
}

func (e *onceErr) Error() string { return e.msg }
func (e *onceErr) Unwrap() error { return e.sentinel }

// onceLog remembers the last OnceKeep envelope ids (a ring, oldest at head) and their results.
type onceLog struct {
	ids  []OnceID
	head int
	seen map[OnceID]onceResult
}

func (l *onceLog) get(id OnceID) (onceResult, bool) {
	r, ok := l.seen[id]
	return r, ok
}

func (l *onceLog) put(id OnceID, r onceResult) {
	if l.seen == nil {
		l.seen = map[OnceID]onceResult{}
	}
	if len(l.ids) < OnceKeep {
		l.ids = append(l.ids, id)
	} else {
		delete(l.seen, l.ids[l.head])
		l.ids[l.head] = id
		l.head = (l.head + 1) % len(l.ids)
	}
	l.seen[id] = r
}

// Duplicates returns how many envelopes Apply skipped as already applied (diagnostics, tests).
func (s *State) Duplicates() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.onceDups
}

// applyOnce applies an envelope: the command inside once per id. Apply runs on the one goroutine
// that applies the log, so nothing changes the state between the check and the apply.
func (s *State) applyOnce(c Command) error {
	if c.Version > onceVersion {
		return fmt.Errorf("%w: %s v%d", ErrNewerVersion, c.Type, c.Version)
	}
	if len(c.Payload) < len(OnceID{})+2 {
		return fmt.Errorf("%w: once: %d bytes", ErrBadPayload, len(c.Payload))
	}
	id := OnceID(c.Payload[:len(OnceID{})])
	inner, err := DecodeCommand(c.Payload[len(OnceID{}):])
	if err != nil {
		return fmt.Errorf("%w: once: %v", ErrBadPayload, err)
	}
	if inner.Type == CmdOnce || inner.Type == CmdBatch {
		return fmt.Errorf("%w: once: %s inside an envelope", ErrBadPayload, inner.Type)
	}
	if skipped(inner) {
		return nil // as Apply would: an ignorable command this binary does not know leaves no trace
	}
	s.mu.Lock()
	r, dup := s.once.get(id)
	if dup {
		s.onceDups++
	}
	s.mu.Unlock()
	if dup {
		return r.err()
	}
	err = s.Apply(inner)
	if Fatal(err) {
		return err // the node stops; nothing to remember
	}
	s.mu.Lock()
	s.once.put(id, resultOf(err))
	s.mu.Unlock()
	return err
}

// skipped reports whether Apply skips c: ignorable, and of a type or version this binary does
// not know.
func skipped(c Command) bool {
	if c.Type&Ignorable == 0 {
		return false
	}
	_, known := cmdNames[c.Type]
	return !known || c.Version > cmdVersion || c.Version == binVersion && !hot(c.Type)
}

// onceSnapshot is the serialised onceLog: the ids oldest first, concatenated, and the results
// that were errors by position.
type onceSnapshot struct {
	IDs    []byte        `json:"ids"`
	Failed []onceFailure `json:"failed,omitempty"`
}

type onceFailure struct {
	At   int      `json:"at"`
	Kind onceKind `json:"kind"`
	Msg  string   `json:"msg"`
}

func (l *onceLog) freeze() *onceSnapshot {
	if len(l.ids) == 0 {
		return nil
	}
	sn := &onceSnapshot{IDs: make([]byte, 0, len(l.ids)*len(OnceID{}))}
	for i := range l.ids {
		id := l.ids[(l.head+i)%len(l.ids)]
		sn.IDs = append(sn.IDs, id[:]...)
		if r := l.seen[id]; r.kind != onceOK {
			sn.Failed = append(sn.Failed, onceFailure{At: i, Kind: r.kind, Msg: r.msg})
		}
	}
	return sn
}

func (sn *onceSnapshot) thaw() onceLog {
	var l onceLog
	if sn == nil {
		return l
	}
	failed := map[int]onceFailure{}
	for _, f := range sn.Failed {
		failed[f.At] = f
	}
	for i := 0; (i+1)*len(OnceID{}) <= len(sn.IDs); i++ {
		r := onceResult{}
		if f, ok := failed[i]; ok {
			r = onceResult{f.Kind, f.Msg}
		}
		l.put(OnceID(sn.IDs[i*len(OnceID{}):(i+1)*len(OnceID{})]), r)
	}
	return l
}

package state

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Binary payloads for the hot commands (PutBinding, PutCall, EndCall): every REGISTER refresh
// and every call writes one, so they skip JSON. A binary payload is version binVersion of its
// command type; version 1 (JSON) still decodes, for the entries already in logs and snapshots
// of older nodes. Layout: fields in declaration order; strings as a uvarint length and bytes;
// integers as (u)varints; times as a varint of Unix seconds and a uvarint of nanoseconds, read
// back in UTC. A node that predates binVersion stops on such an entry (ErrNewerVersion) rather
// than diverge: upgrade every node before the cluster writes them. Version 3 added the dialog
// state of each leg and Call.AdoptedFrom (calls adopted when their node dies); version 2
// payloads (without them) still decode. Version 3 also added Call.Far.
const (
	binV2      = 2
	binVersion = 3
)

// hot reports whether t has a binary payload at binVersion.
func hot(t CmdType) bool { return t == CmdPutBinding || t == CmdPutCall || t == CmdEndCall }

type binWriter []byte

func (w *binWriter) str(s string) {
	*w = binary.AppendUvarint(*w, uint64(len(s)))
	*w = append(*w, s...)
}

func (w *binWriter) uint(v uint64) { *w = binary.AppendUvarint(*w, v) }
func (w *binWriter) int(v int64)   { *w = binary.AppendVarint(*w, v) }

func (w *binWriter) time(t time.Time) {
	w.int(t.Unix())
	w.uint(uint64(t.Nanosecond()))
}

// binReader reads a payload; the first error sticks. Strings are slices of one copy of the
// payload (one allocation for all of them).
type binReader struct {
	s   string
	off int
	err error
	v   uint8 // payload version: binV2 lacks the dialog state of the legs
}

func (r *binReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: binary payload: bad %s at byte %d", ErrBadPayload, what, r.off)
	}
}

func (r *binReader) uint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := uvarintString(r.s[r.off:])
	if n <= 0 {
		r.fail("unsigned")
		return 0
	}
	r.off += n
	return v
}

func (r *binReader) int() int64 {
	u := r.uint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (r *binReader) str() string {
	l := r.uint()
	if r.err != nil {
		return ""
	}
	if l > uint64(len(r.s)-r.off) {
		r.fail("string length")
		return ""
	}
	s := r.s[r.off : r.off+int(l)]
	r.off += int(l)
	return s
}

func (r *binReader) time() time.Time {
	sec, ns := r.int(), r.uint()
	if r.err != nil {
		return time.Time{}
	}
	if ns >= 1e9 {
		r.fail("time")
		return time.Time{}
	}
	return time.Unix(sec, int64(ns)).UTC()
}

func (r *binReader) done() error {
	if r.err == nil && r.off != len(r.s) {
		r.fail("trailing bytes")
	}
	return r.err
}

// uvarintString is binary.Uvarint over a string (no copy).
func uvarintString(s string) (uint64, int) {
	var x uint64
	var sh uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		b := s[i]
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, -(i + 1) // overflow
			}
			return x | uint64(b)<<sh, i + 1
		}
		x |= uint64(b&0x7f) << sh
		sh += 7
	}
	return 0, 0
}

func (w *binWriter) binding(b *Binding) {
	w.str(b.Room)
	w.str(b.Contact)
	w.str(b.Source)
	w.str(b.Transport)
	w.str(b.Local)
	w.str(b.Node)
	w.str(b.CallID)
	w.uint(uint64(b.CSeq))
	w.str(b.UserAgent)
	w.time(b.Expires)
	w.time(b.Updated)
	w.str(b.Instance)
	w.int(int64(b.RegID))
}

func (r *binReader) binding(b *Binding) {
	b.Room, b.Contact, b.Source, b.Transport = r.str(), r.str(), r.str(), r.str()
	b.Local, b.Node, b.CallID = r.str(), r.str(), r.str()
	if cseq := r.uint(); cseq > 1<<32-1 {
		r.fail("cseq")
	} else {
		b.CSeq = uint32(cseq)
	}
	b.UserAgent = r.str()
	b.Expires, b.Updated = r.time(), r.time()
	b.Instance = r.str()
	if id := r.int(); id < 0 || id > 1<<31-1 {
		r.fail("reg-id")
	} else {
		b.RegID = int(id)
	}
}

func (w *binWriter) leg(l *Leg) {
	w.str(l.CallID)
	w.str(l.LocalTag)
	w.str(l.RemoteTag)
	w.str(l.Peer)
	w.str(l.Transport)
	w.str(l.Node)
	w.str(l.Local)
	w.str(l.LocalName)
	w.str(l.Remote)
	w.str(l.RemoteName)
	w.str(l.Target)
	w.uint(uint64(len(l.Routes)))
	for _, r := range l.Routes {
		w.str(r)
	}
	w.uint(uint64(l.LocalCSeq))
	w.uint(uint64(l.RemoteCSeq))
	w.str(l.SDP)
}

func (r *binReader) leg(l *Leg) {
	l.CallID, l.LocalTag, l.RemoteTag, l.Peer, l.Transport = r.str(), r.str(), r.str(), r.str(), r.str()
	if r.v == binV2 {
		return
	}
	l.Node, l.Local, l.LocalName, l.Remote, l.RemoteName, l.Target = r.str(), r.str(), r.str(), r.str(), r.str(), r.str()
	n := r.uint()
	if n > uint64(len(r.s)-r.off) { // each route takes a byte at least
		r.fail("route count")
		return
	}
	for range n {
		l.Routes = append(l.Routes, r.str())
	}
	l.LocalCSeq, l.RemoteCSeq = r.cseq(), r.cseq()
	l.SDP = r.str()
}

func (r *binReader) cseq() uint32 {
	v := r.uint()
	if v > 1<<32-1 {
		r.fail("cseq")
		return 0
	}
	return uint32(v)
}

func (w *binWriter) call(c *Call) {
	w.str(c.ID)
	w.str(c.Room)
	w.str(string(c.Direction))
	w.str(c.From)
	w.str(c.To)
	w.str(c.Source)
	w.str(c.Node)
	w.str(string(c.State))
	w.leg(&c.A)
	w.leg(&c.B)
	w.time(c.Started)
	w.time(c.Answered)
	w.str(c.AdoptedFrom)
	w.leg(&c.Far)
}

func (r *binReader) call(c *Call) {
	c.ID, c.Room, c.Direction = r.str(), r.str(), Direction(r.str())
	c.From, c.To, c.Source, c.Node, c.State = r.str(), r.str(), r.str(), r.str(), CallState(r.str())
	r.leg(&c.A)
	r.leg(&c.B)
	c.Started, c.Answered = r.time(), r.time()
	if r.v != binV2 {
		c.AdoptedFrom = r.str()
		r.leg(&c.Far)
	}
}

func (w *binWriter) record(rec *CallRecord) {
	w.call(&rec.Call)
	w.uint(rec.Seq)
	w.time(rec.Ended)
	w.int(int64(rec.Duration))
	w.str(rec.EndReason)
	w.int(int64(rec.Status))
}

func (r *binReader) record(rec *CallRecord) {
	r.call(&rec.Call)
	rec.Seq = r.uint()
	rec.Ended = r.time()
	rec.Duration = time.Duration(r.int())
	rec.EndReason = r.str()
	rec.Status = int(r.int())
}

// newBinary builds a hot command with its binary payload.
func newBinary(t CmdType, enc func(*binWriter)) Command {
	w := make(binWriter, 0, 256)
	enc(&w)
	return Command{Type: t, Version: binVersion, Payload: w}
}

// DecodeBinding, DecodeCall and DecodeCallRecord decode the binary payloads (binVersion).
func DecodeBinding(p []byte) (Binding, error) { return decodeBinding(p, binVersion) }

// DecodeCall decodes a binary PutCall payload.
func DecodeCall(p []byte) (Call, error) { return decodeCall(p, binVersion) }

// DecodeCallRecord decodes a binary EndCall payload.
func DecodeCallRecord(p []byte) (CallRecord, error) { return decodeCallRecord(p, binVersion) }

func decodeBinding(p []byte, v uint8) (Binding, error) {
	var b Binding
	r := binReader{s: string(p), v: v}
	r.binding(&b)
	return b, r.done()
}

func decodeCall(p []byte, v uint8) (Call, error) {
	var c Call
	r := binReader{s: string(p), v: v}
	r.call(&c)
	return c, r.done()
}

func decodeCallRecord(p []byte, v uint8) (CallRecord, error) {
	var rec CallRecord
	r := binReader{s: string(p), v: v}
	r.record(&rec)
	return rec, r.done()
}

// isBinary reports whether a command's payload is binary (a hot command at binV2 or binVersion).
func isBinary(c Command) bool { return (c.Version == binV2 || c.Version == binVersion) && hot(c.Type) }

// decodeHot decodes a hot command's payload: binary at binVersion (by bin), binary at binV2
// (the layout without the legs' dialog state), or JSON, by its version.
func decodeHot[T any](c Command, bin func([]byte) (T, error)) (T, error) {
	if !isBinary(c) {
		return decode[T](c)
	}
	var v T
	var err error
	if c.Version == binVersion {
		v, err = bin(c.Payload)
	} else {
		v, err = decodeV2[T](c.Payload)
	}
	if err != nil {
		return v, fmt.Errorf("%s: %w", c.Type, err)
	}
	return v, nil
}

// decodeV2 decodes a binV2 payload of a Binding, Call or CallRecord.
func decodeV2[T any](p []byte) (T, error) {
	var v T
	r := binReader{s: string(p), v: binV2}
	switch x := any(&v).(type) {
	case *Binding:
		r.binding(x)
	case *Call:
		r.call(x)
	case *CallRecord:
		r.record(x)
	default:
		r.fail("type")
	}
	return v, r.done()
}

// BindingOf returns the binding a PutBinding command carries, whatever its payload version (for
// observers of the applied commands).
func BindingOf(c Command) (Binding, error) {
	if c.Type != CmdPutBinding {
		return Binding{}, fmt.Errorf("%w: %s is not %s", ErrBadPayload, c.Type, CmdPutBinding)
	}
	return decodeHot(c, DecodeBinding)
}

// Legacy returns the encoded command b in the form a node without binary payloads applies: a
// hot command at binVersion is re-encoded as JSON (version 1); anything else is returned as it
// is. Used while some member of the cluster may be older.
func Legacy(b []byte) ([]byte, error) {
	c, err := DecodeCommand(b)
	if err != nil || !isBinary(c) {
		return b, err
	}
	var v any
	switch c.Type {
	case CmdPutBinding:
		v, err = decodeBinding(c.Payload, c.Version)
	case CmdPutCall:
		v, err = decodeCall(c.Payload, c.Version)
	case CmdEndCall:
		v, err = decodeCallRecord(c.Payload, c.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Type, err)
	}
	return newCommand(c.Type, v).Encode(), nil
}

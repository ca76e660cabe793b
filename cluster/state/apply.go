// Applying commands: the one entry point of every change (Apply), its dispatch, and expiry.

package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Apply changes the state by one command. It is deterministic. An error for an unknown,
// non-ignorable type or a newer version means this node cannot follow the log and must stop;
// other errors (a bad payload) are returned to the proposer and change nothing.
func (s *State) Apply(c Command) error {
	if c.Version > cmdVersion || c.Version == binVersion && !hot(c.Type) {
		if c.Type&Ignorable != 0 {
			return nil
		}
		return fmt.Errorf("%w: %s v%d", ErrNewerVersion, c.Type, c.Version)
	}
	s.mu.Lock()
	err := s.apply(c)
	if err == nil {
		s.applied++
	}
	ended := s.ended
	s.ended = nil
	s.mu.Unlock()
	if err == nil {
		s.notify(c)
		if ended != nil {
			s.notifyEnded(*ended)
		}
	}
	return err
}

// Fatal reports whether an Apply error means the node cannot follow the log.
func Fatal(err error) bool {
	return errors.Is(err, ErrUnknownCommand) || errors.Is(err, ErrNewerVersion)
}

func decode[T any](c Command) (T, error) {
	var v T
	if err := json.Unmarshal(c.Payload, &v); err != nil {
		return v, fmt.Errorf("%w: %s: %v", ErrBadPayload, c.Type, err)
	}
	return v, nil
}

func (s *State) apply(c Command) error {
	switch c.Type {
	case CmdPutRoom:
		r, err := decode[Room](c)
		if err != nil {
			return err
		}
		if r.Name == "" {
			return fmt.Errorf("%w: room without a name", ErrBadPayload)
		}
		s.rooms[r.Name] = r
	case CmdDeleteRoom:
		k, err := decode[roomKey](c)
		if err != nil {
			return err
		}
		if _, ok := s.rooms[k.Room]; !ok {
			return fmt.Errorf("room %q: %w", k.Room, ErrNotFound)
		}
		delete(s.rooms, k.Room)
		s.dropBindings(k.Room, nil)
	case CmdPutBinding:
		b, err := decodeHot(c, DecodeBinding)
		if err != nil {
			return err
		}
		s.putBinding(b)
	case CmdDeleteBinding:
		k, err := decode[bindingKey](c)
		if err != nil {
			return err
		}
		s.dropBindings(k.Room, func(b Binding) bool { return b.Key() == k.Contact })
	case CmdDeleteRoomBindings:
		k, err := decode[roomKey](c)
		if err != nil {
			return err
		}
		s.dropBindings(k.Room, nil)
	case CmdSetTrunkKey:
		k, err := decode[trunkKey](c)
		if err != nil {
			return err
		}
		if len(s.trunkKey) == 0 && len(k.Key) >= 16 {
			s.trunkKey = k.Key
		}
	case CmdDeleteNodeBindings:
		k, err := decode[nodeKey](c)
		if err != nil {
			return err
		}
		for room := range s.bindings {
			s.dropBindings(room, func(b Binding) bool { return b.Node == k.Node })
		}
	case CmdExpire:
		a, err := decode[expireArgs](c)
		if err != nil {
			return err
		}
		s.expire(a)
	case CmdPutBan:
		b, err := decode[Ban](c)
		if err != nil {
			return err
		}
		if !b.Prefix.IsValid() {
			return fmt.Errorf("%w: ban without a valid prefix", ErrBadPayload)
		}
		b.Prefix = b.Prefix.Masked()
		s.bans[b.Prefix] = b
	case CmdLiftBan:
		k, err := decode[prefixKey](c)
		if err != nil {
			return err
		}
		p := k.Prefix.Masked()
		if _, ok := s.bans[p]; !ok {
			return fmt.Errorf("ban %s: %w", p, ErrNotFound)
		}
		delete(s.bans, p)
	case CmdSetLists:
		l, err := decode[Lists](c)
		if err != nil {
			return err
		}
		s.lists = l
	case CmdPutCall:
		call, err := decodeHot(c, DecodeCall)
		if err != nil {
			return err
		}
		s.putCall(call)
	case CmdEndCall:
		r, err := decodeHot(c, DecodeCallRecord)
		if err != nil {
			return err
		}
		s.dropCall(r.ID)
		s.recordSeq++
		r.Seq = s.recordSeq
		r.State = CallEnded
		s.records = append(s.records, r)
		s.records = trimTail(s.records, DefaultKeepRecords)
	case CmdEndCalls:
		e, err := s.applyEndCalls(c)
		if err != nil {
			return err
		}
		s.ended = &e
	case CmdNodeLost:
		return s.applyNodeLostCommand(c)
	case CmdSinkCursor:
		return s.applySinkCursor(c)
	case CmdPutToken:
		t, err := decode[Token](c)
		if err != nil {
			return err
		}
		s.tokens[t.ID] = t
	case CmdDeleteToken:
		k, err := decode[idKey](c)
		if err != nil {
			return err
		}
		if _, ok := s.tokens[k.ID]; !ok {
			return fmt.Errorf("token %q: %w", k.ID, ErrNotFound)
		}
		delete(s.tokens, k.ID)
	case CmdAudit:
		e, err := decode[AuditEntry](c)
		if err != nil {
			return err
		}
		s.auditSeq++
		e.Seq = s.auditSeq
		s.audit = append(s.audit, e)
		s.audit = trim(s.audit, DefaultKeepAudit)
	default:
		if ok, err := s.applyACME(c); ok {
			return err
		}
		if c.Type&Ignorable != 0 {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrUnknownCommand, c.Type)
	}
	return nil
}

// trimTail keeps the last keep elements without copying them: the dropped head stays in the
// backing array until the next append outgrows it, which then copies only what is kept. So an
// append to a full log costs O(1) amortized, not a copy of the log (trim's), with memory bounded
// to about twice keep.
func trimTail[T any](s []T, keep int) []T {
	if len(s) <= keep {
		return s
	}
	clear(s[:len(s)-keep]) // release what the dropped elements point to
	return s[len(s)-keep:]
}

func trim[T any](s []T, keep int) []T {
	if len(s) <= keep {
		return s
	}
	// Copy so the dropped head is released rather than pinned by the backing array.
	return append([]T(nil), s[len(s)-keep:]...)
}

func (s *State) expire(a expireArgs) {
	for room := range s.bindings {
		s.dropBindings(room, func(b Binding) bool { return !b.Expires.After(a.Now) })
	}
	for p, b := range s.bans {
		if !b.Until.After(a.Now) {
			delete(s.bans, p)
		}
	}
	if a.KeepRecords > 0 {
		s.records = trim(s.records, a.KeepRecords)
	}
	if a.KeepAudit > 0 {
		s.audit = trim(s.audit, a.KeepAudit)
	}
}

// Due reports whether Expire at now would drop anything: a binding or a ban that expired at or
// before now. The leader checks it before proposing an Expire, so an idle cluster writes nothing.
func (s *State) Due(now time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.bindings {
		for _, b := range m {
			if !b.Expires.After(now) {
				return true
			}
		}
	}
	for _, b := range s.bans {
		if !b.Until.After(now) {
			return true
		}
	}
	return false
}

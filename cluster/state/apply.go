// Applying commands: the one entry point of every change (Apply) and its dispatch table; the
// handlers live with their domain (rooms.go, bindings.go, bans.go, calls.go, tokens.go, ...).

package state

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Apply changes the state by one command. It is deterministic. An error for an unknown,
// non-ignorable type or a newer version means this node cannot follow the log and must stop;
// other errors (a bad payload) are returned to the proposer and change nothing.
func (s *State) Apply(c Command) error {
	if c.Type == CmdOnce {
		return s.applyOnce(c) // once.go
	}
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

// applier applies one command type's payload. Callers hold mu.
type applier func(s *State, c Command) error

// appliers is the dispatch table of Apply: command type -> handler, built here and only here (a
// type given twice does not compile). A type without a handler is unknown: skipped when it is
// ignorable, fatal otherwise. CmdRestored has none: it is never proposed. Most handlers take
// their decoded payload (on, onHot); a payload that does not decode changes nothing.
var appliers = [256]applier{
	CmdPutRoom:            on((*State).applyPutRoom),
	CmdDeleteRoom:         on((*State).applyDeleteRoom),
	CmdPutBinding:         onHot(DecodeBinding, (*State).applyPutBinding),
	CmdDeleteBinding:      on((*State).applyDeleteBinding),
	CmdDeleteRoomBindings: on((*State).applyDeleteRoomBindings),
	CmdDeleteNodeBindings: on((*State).applyDeleteNodeBindings),
	CmdExpire:             on((*State).applyExpire),
	CmdPutBan:             on((*State).applyPutBan),
	CmdLiftBan:            on((*State).applyLiftBan),
	CmdSetLists:           on((*State).applySetLists),
	CmdPutCall:            onHot(DecodeCall, (*State).applyPutCall),
	CmdEndCall:            onHot(DecodeCallRecord, (*State).applyEndCall),
	CmdEndCalls:           (*State).applyEndCallsCommand,
	CmdNodeLost:           (*State).applyNodeLostCommand,
	CmdSetTrunkKey:        on((*State).applySetTrunkKey),
	CmdSetRealm:           on((*State).applySetRealm),
	CmdSinkCursor:         (*State).applySinkCursor,
	CmdClusterFormats:     (*State).applyClusterFormats,
	CmdPutToken:           on((*State).applyPutToken),
	CmdDeleteToken:        on((*State).applyDeleteToken),
	CmdAudit:              on((*State).applyAudit),
	CmdPutACMEAccount:     on((*State).applyPutACMEAccount),
	CmdPutCertificate:     on((*State).applyPutCertificate),
	CmdPutChallenge:       on((*State).applyPutChallenge),
	CmdDeleteChallenge:    on((*State).applyDeleteChallenge),
}

// on is the handler of a command whose JSON payload is a T.
func on[T any](apply func(s *State, v T) error) applier {
	return func(s *State, c Command) error {
		v, err := decode[T](c)
		if err != nil {
			return err
		}
		return apply(s, v)
	}
}

// onHot is the handler of a hot command, whose payload is a T in binary (decoded by bin) or
// JSON by its version (binary.go).
func onHot[T any](bin func([]byte) (T, error), apply func(s *State, v T) error) applier {
	return func(s *State, c Command) error {
		v, err := decodeHot(c, bin)
		if err != nil {
			return err
		}
		return apply(s, v)
	}
}

func (s *State) apply(c Command) error {
	if h := appliers[c.Type]; h != nil {
		return h(s, c)
	}
	if c.Type&Ignorable != 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUnknownCommand, c.Type)
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

package state

import "fmt"

// Sink cursors. Call records leave the box through sinks (syslog, webhook, file: sbc/sinks),
// shipped by the leader only. After each delivered batch the leader writes the sequence of the
// last record it delivered to each sink into the state, so that a new leader resumes where the
// old one stopped: records are delivered at least once, and each carries its Seq as dedup key.

// CmdSinkCursor advances one sink's cursor. Never renumber. It is ignorable: a node running an
// older binary skips it (and would only ship again what was already shipped, were it leader).
const CmdSinkCursor CmdType = Ignorable | 18

func init() { cmdNames[CmdSinkCursor] = "sink-cursor" }

type sinkCursor struct {
	Sink string `json:"sink"`
	Seq  uint64 `json:"seq"`
}

// SinkCursor records that every call record up to seq has been delivered to sink. A cursor
// never moves back: applying an older one (a late write of a former leader) changes nothing.
func SinkCursor(sink string, seq uint64) Command {
	return newCommand(CmdSinkCursor, sinkCursor{Sink: sink, Seq: seq})
}

// applySinkCursor applies CmdSinkCursor. Callers hold mu.
func (s *State) applySinkCursor(c Command) error {
	k, err := decode[sinkCursor](c)
	if err != nil {
		return err
	}
	if k.Sink == "" {
		return fmt.Errorf("%w: sink cursor without a sink name", ErrBadPayload)
	}
	if k.Seq > s.sinkCursors[k.Sink] {
		if s.sinkCursors == nil {
			s.sinkCursors = map[string]uint64{}
		}
		s.sinkCursors[k.Sink] = k.Seq
	}
	return nil
}

// SinkCursor returns the sequence of the last call record delivered to sink (0: none).
func (s *State) SinkCursor(sink string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sinkCursors[sink]
}

// LastRecordSeq returns the sequence of the newest call record (0: none yet).
func (s *State) LastRecordSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.recordSeq
}

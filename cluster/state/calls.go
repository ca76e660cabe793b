// Calls: the active calls and the records of ended ones (the indexes are kept in index.go, calls
// ended on behalf of their owner in calls_owner.go), and the key that signs calls handed between
// nodes.

package state

func (s *State) applyPutCall(call Call) error {
	s.putCall(call)
	return nil
}

// applyEndCall removes an active call and appends its record with the next Seq.
func (s *State) applyEndCall(r CallRecord) error {
	s.dropCall(r.ID)
	s.recordSeq++
	r.Seq = s.recordSeq
	r.State = CallEnded
	s.records = append(s.records, r)
	s.records = trimTail(s.records, DefaultKeepRecords)
	return nil
}

// applySetTrunkKey sets the trunk key once: a later command (another first node) changes nothing.
func (s *State) applySetTrunkKey(k trunkKey) error {
	if len(s.trunkKey) == 0 && len(k.Key) >= 16 {
		s.trunkKey = k.Key
	}
	return nil
}

// applySetRealm records the cluster's SIP realm once: a later command changes nothing.
func (s *State) applySetRealm(r realmArg) error {
	if s.realm == "" {
		s.realm = r.Realm
	}
	return nil
}

// applyEndCallsCommand applies CmdEndCalls (calls_owner.go) and keeps what it ended for the
// ended observers, told once the lock is released (Apply).
func (s *State) applyEndCallsCommand(c Command) error {
	e, err := s.applyEndCalls(c)
	if err != nil {
		return err
	}
	s.ended = &e
	return nil
}

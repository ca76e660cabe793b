// Expiry: bindings and bans that expired, and the bounds of the record and audit logs.

package state

import "time"

// applyExpire drops the bindings and bans that expired at a.Now and trims the logs.
func (s *State) applyExpire(a expireArgs) error {
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
	return nil
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

// Admin API: its tokens and the audit log of its writes.

package state

import "fmt"

func (s *State) applyPutToken(t Token) error {
	s.tokens[t.ID] = t
	return nil
}

func (s *State) applyDeleteToken(k idKey) error {
	if _, ok := s.tokens[k.ID]; !ok {
		return fmt.Errorf("token %q: %w", k.ID, ErrNotFound)
	}
	delete(s.tokens, k.ID)
	return nil
}

// applyAudit appends an audit entry with the next Seq.
func (s *State) applyAudit(e AuditEntry) error {
	s.auditSeq++
	e.Seq = s.auditSeq
	s.audit = append(s.audit, e)
	s.audit = trim(s.audit, DefaultKeepAudit)
	return nil
}

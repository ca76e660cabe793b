// Bans and the guard's global lists.

package state

import "fmt"

func (s *State) applyPutBan(b Ban) error {
	if !b.Prefix.IsValid() {
		return fmt.Errorf("%w: ban without a valid prefix", ErrBadPayload)
	}
	b.Prefix = b.Prefix.Masked()
	s.bans[b.Prefix] = b
	return nil
}

func (s *State) applyLiftBan(k prefixKey) error {
	p := k.Prefix.Masked()
	if _, ok := s.bans[p]; !ok {
		return fmt.Errorf("ban %s: %w", p, ErrNotFound)
	}
	delete(s.bans, p)
	return nil
}

func (s *State) applySetLists(l Lists) error {
	s.lists = l
	return nil
}

// Bans and the guard's global lists.

package state

import "fmt"

func (s *State) applyPutBan(c Command) error {
	b, err := decode[Ban](c)
	if err != nil {
		return err
	}
	if !b.Prefix.IsValid() {
		return fmt.Errorf("%w: ban without a valid prefix", ErrBadPayload)
	}
	b.Prefix = b.Prefix.Masked()
	s.bans[b.Prefix] = b
	return nil
}

func (s *State) applyLiftBan(c Command) error {
	k, err := decode[prefixKey](c)
	if err != nil {
		return err
	}
	p := k.Prefix.Masked()
	if _, ok := s.bans[p]; !ok {
		return fmt.Errorf("ban %s: %w", p, ErrNotFound)
	}
	delete(s.bans, p)
	return nil
}

func (s *State) applySetLists(c Command) error {
	l, err := decode[Lists](c)
	if err != nil {
		return err
	}
	s.lists = l
	return nil
}

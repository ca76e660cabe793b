// Bindings: the registered contacts of the rooms (their indexes are kept in index.go).

package state

func (s *State) applyPutBinding(c Command) error {
	b, err := decodeHot(c, DecodeBinding)
	if err != nil {
		return err
	}
	s.putBinding(b)
	return nil
}

func (s *State) applyDeleteBinding(c Command) error {
	k, err := decode[bindingKey](c)
	if err != nil {
		return err
	}
	s.dropBindings(k.Room, func(b Binding) bool { return b.Key() == k.Contact })
	return nil
}

func (s *State) applyDeleteRoomBindings(c Command) error {
	k, err := decode[roomKey](c)
	if err != nil {
		return err
	}
	s.dropBindings(k.Room, nil)
	return nil
}

// applyDeleteNodeBindings drops every binding whose flow the node owned.
func (s *State) applyDeleteNodeBindings(c Command) error {
	k, err := decode[nodeKey](c)
	if err != nil {
		return err
	}
	for room := range s.bindings {
		s.dropBindings(room, func(b Binding) bool { return b.Node == k.Node })
	}
	return nil
}

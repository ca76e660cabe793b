// Bindings: the registered contacts of the rooms (their indexes are kept in index.go).

package state

func (s *State) applyPutBinding(b Binding) error {
	s.putBinding(b)
	return nil
}

func (s *State) applyDeleteBinding(k bindingKey) error {
	s.dropBindings(k.Room, func(b Binding) bool { return b.Key() == k.Contact })
	return nil
}

func (s *State) applyDeleteRoomBindings(k roomKey) error {
	s.dropBindings(k.Room, nil)
	return nil
}

// applyDeleteNodeBindings drops every binding whose flow the node owned.
func (s *State) applyDeleteNodeBindings(k nodeKey) error {
	for room := range s.bindings {
		s.dropBindings(room, func(b Binding) bool { return b.Node == k.Node })
	}
	return nil
}

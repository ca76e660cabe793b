// Rooms: the room systems that register to Portcullis.

package state

import "fmt"

func (s *State) applyPutRoom(r Room) error {
	if r.Name == "" {
		return fmt.Errorf("%w: room without a name", ErrBadPayload)
	}
	s.rooms[r.Name] = r
	return nil
}

// applyDeleteRoom removes a room and its bindings.
func (s *State) applyDeleteRoom(k roomKey) error {
	if _, ok := s.rooms[k.Room]; !ok {
		return fmt.Errorf("room %q: %w", k.Room, ErrNotFound)
	}
	delete(s.rooms, k.Room)
	s.dropBindings(k.Room, nil)
	return nil
}

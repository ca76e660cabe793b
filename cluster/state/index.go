// Writes and the indexes kept with them: bindings with their flow index, calls with their per-room
// and per-peer indexes.

package state

import "net/netip"

// flowUnit is a's IPv4 address, or its IPv6 /64.
func flowUnit(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		b := a.As16()
		clear(b[8:])
		return netip.AddrFrom16(b)
	}
	return a
}

// putBinding adds or replaces a binding and keeps flows in step. Callers hold mu (or own s).
func (s *State) putBinding(b Binding) {
	m := s.bindings[b.Room]
	if m == nil {
		m = map[string]Binding{}
		s.bindings[b.Room] = m
	}
	old, had := m[b.Key()]
	m[b.Key()] = b
	s.flowMu.Lock()
	if had {
		s.indexFlow(old, -1)
	}
	s.indexFlow(b, 1)
	s.flowMu.Unlock()
}

// dropBindings removes the bindings of room for which drop reports true (nil: all of them)
// and keeps flows in step. Callers hold mu.
func (s *State) dropBindings(room string, drop func(Binding) bool) {
	m := s.bindings[room]
	if m == nil {
		return
	}
	s.flowMu.Lock()
	for contact, b := range m {
		if drop == nil || drop(b) {
			delete(m, contact)
			s.indexFlow(b, -1)
		}
	}
	s.flowMu.Unlock()
	if len(m) == 0 {
		delete(s.bindings, room)
	}
}

// indexFlow counts one binding more or less for its source, and for its node's trunk address.
// Callers hold flowMu.
func (s *State) indexFlow(b Binding, delta int) {
	if b.Local != "" {
		k := nodeTrunk{b.Node, b.Local}
		if s.trunks[k] += delta; s.trunks[k] <= 0 {
			delete(s.trunks, k)
		}
	}
	ap, err := netip.ParseAddrPort(b.Source)
	if err != nil {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if s.flows[ap] += delta; s.flows[ap] <= 0 {
		delete(s.flows, ap)
	}
	u := flowUnit(ap.Addr())
	if s.flowUnits[u] += delta; s.flowUnits[u] <= 0 {
		delete(s.flowUnits, u)
	}
}

// putCall adds or replaces a call and keeps roomCalls in step. Callers hold mu (or own s).
func (s *State) putCall(c Call) {
	if old, ok := s.calls[c.ID]; ok {
		s.indexCall(old, -1)
	}
	s.calls[c.ID] = c
	s.indexCall(c, 1)
}

// dropCall removes a call and its index entry. Callers hold mu.
func (s *State) dropCall(id string) {
	if old, ok := s.calls[id]; ok {
		s.indexCall(old, -1)
		delete(s.calls, id)
	}
}

func (s *State) indexCall(c Call, delta int) {
	if c.State == CallEnded {
		return
	}
	s.flowMu.Lock()
	for _, peer := range []string{c.A.Peer, c.B.Peer} {
		if ap, err := netip.ParseAddrPort(peer); err == nil {
			u := flowUnit(ap.Addr())
			if s.callPeers[u] += delta; s.callPeers[u] <= 0 {
				delete(s.callPeers, u)
			}
		}
	}
	s.flowMu.Unlock()
	if c.Room == "" {
		return
	}
	byNode := s.roomCalls[c.Room]
	if byNode == nil {
		if delta < 0 {
			return
		}
		byNode = map[string]int{}
		s.roomCalls[c.Room] = byNode
	}
	if byNode[c.Node] += delta; byNode[c.Node] <= 0 {
		delete(byNode, c.Node)
		if len(byNode) == 0 {
			delete(s.roomCalls, c.Room)
		}
	}
}

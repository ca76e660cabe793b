package digest

import (
	"math/bits"
	"sync"
)

// ncTable keeps the highest nonce-count seen per nonce, in a ring of fixed size: every nonce
// this Authenticator issues carries a sequence number, and the nonce's slot is the number
// modulo the ring size. Issuing clears the slot; verifying checks and raises its count. A nonce
// whose slot was reused by a later one (more nonces were issued after it than the ring holds)
// is answered Stale: the client gets a fresh challenge, never a second use. Issuing and checking
// are O(1) whatever the rate (the map this replaced was scanned whole per new nonce once full,
// and then refused every new nonce until the old ones expired), and the memory is fixed
// (8 bytes a slot), so a flood cannot grow it.
type ncTable struct {
	mu    sync.Mutex
	next  uint32 // sequence number of the next nonce issued
	mask  uint32
	slots []ncSlot
}

type ncSlot struct {
	seq uint32
	nc  uint32 // highest nonce-count accepted; 0: not used yet
}

// init sizes the ring: size rounded up to a power of two.
func (t *ncTable) init(size int) {
	n := uint32(1) << bits.Len32(uint32(min(max(size, 2), 1<<30)-1))
	t.mask, t.slots = n-1, make([]ncSlot, n)
}

// issue returns the sequence number for a new nonce and clears its slot.
func (t *ncTable) issue() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.next
	t.next++
	t.slots[s&t.mask] = ncSlot{seq: s}
	return s
}

// advance records nc for the nonce with sequence number seq if it is higher than any seen;
// ok false is a replay, stale true a nonce outside the ring's window (or not issued here).
func (t *ncTable) advance(seq, nc uint32) (ok, stale bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.next - seq; d == 0 || d > t.mask+1 {
		return false, true
	}
	sl := &t.slots[seq&t.mask]
	if sl.seq != seq {
		return false, true
	}
	if nc <= sl.nc {
		return false, false
	}
	sl.nc = nc
	return true, false
}

package digest

import (
	"sync"
	"time"
)

// ncTable keeps the highest nonce-count seen per nonce, for nonces that authenticated a request.
// Only successful verifications add entries, so an attacker without credentials cannot fill it.
type ncTable struct {
	mu  sync.Mutex
	max int
	m   map[string]ncEntry
}

type ncEntry struct {
	nc      uint32
	expires time.Time
}

// advance records nc for nonce if it is higher than any seen; false means a replay (or a full
// table, which the caller answers with a fresh nonce).
func (t *ncTable) advance(nonce string, nc uint32, expires, now time.Time) (ok, full bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, found := t.m[nonce]
	if found {
		if nc <= e.nc {
			return false, false
		}
		e.nc = nc
		t.m[nonce] = e
		return true, false
	}
	if len(t.m) >= t.max {
		for k, v := range t.m {
			if !now.Before(v.expires) {
				delete(t.m, k)
			}
		}
		if len(t.m) >= t.max {
			return false, true
		}
	}
	t.m[nonce] = ncEntry{nc: nc, expires: expires}
	return true, false
}

func (t *ncTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

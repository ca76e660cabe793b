//go:build !linux

package fastpath

// FastPath is unavailable outside Linux; [Open] always fails.
type FastPath struct{}

// Open fails with [ErrUnsupported] outside Linux.
func Open(ifaces []string) (*FastPath, error) { return nil, ErrUnsupported }

// Interfaces returns nil.
func (f *FastPath) Interfaces() []string { return nil }

// Install fails with [ErrUnsupported].
func (f *FastPath) Install(e Entry) error { return ErrUnsupported }

// Remove fails with [ErrUnsupported].
func (f *FastPath) Remove(m Match) (Counters, error) { return Counters{}, ErrUnsupported }

// Counters fails with [ErrUnsupported].
func (f *FastPath) Counters(m Match) (Counters, error) { return Counters{}, ErrUnsupported }

// Entries returns 0.
func (f *FastPath) Entries() int { return 0 }

// Close does nothing.
func (f *FastPath) Close() error { return nil }

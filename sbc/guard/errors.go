package guard

import "errors"

// Errors of the guard package. Callers test them with errors.Is; every returned error wraps one
// of them with the detail (which entry, which feed) that caused it.
var (
	// ErrConfig reports a Config that cannot work (a bad number, a missing store).
	ErrConfig = errors.New("guard: bad config")
	// ErrPattern reports an allow/deny entry that is not a CIDR, IP, domain or user@domain glob.
	ErrPattern = errors.New("guard: bad pattern")
	// ErrFeed reports a threat feed that could not be fetched or parsed.
	ErrFeed = errors.New("guard: bad feed")
	// ErrRunning reports a second concurrent call of Run.
	ErrRunning = errors.New("guard: already running")
)

package state

import "errors"

// Errors of the state package.
var (
	ErrShortCommand   = errors.New("state: command too short")
	ErrUnknownCommand = errors.New("state: unknown command type")
	ErrNewerVersion   = errors.New("state: command version newer than this binary")
	ErrBadPayload     = errors.New("state: bad command payload")
	ErrNotFound       = errors.New("state: not found")
	ErrBadSnapshot    = errors.New("state: bad snapshot")
)

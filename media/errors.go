package media

import (
	"errors"

	"github.com/portcullis-sbc/portcullis/media/relay"
)

var (
	// ErrPoolExhausted means no relay ports are free; answer 503.
	ErrPoolExhausted = relay.ErrPoolExhausted
	// ErrSessionExists means NewSession was called twice with one id.
	ErrSessionExists = errors.New("media: session id already in use")
	// ErrClosed means the session or manager is closed.
	ErrClosed = errors.New("media: closed")
	// ErrBadSDP means the body is not SDP at all (answer 488).
	ErrBadSDP = errors.New("media: unusable SDP")
	// ErrBadConfig means the configuration is invalid.
	ErrBadConfig = errors.New("media: bad configuration")
)

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
	// ErrTooManyStreams means an SDP has more m-lines than a call may have (answer 488). It
	// is returned before any port is taken.
	ErrTooManyStreams = errors.New("media: too many media streams")
	// ErrSourceBusy means the caller's source already holds its share of relay ports in
	// calls not answered yet (answer 503). It is returned before any port is taken.
	ErrSourceBusy = errors.New("media: source holds too many ports in unanswered calls")
	// ErrBadConfig means the configuration is invalid.
	ErrBadConfig = errors.New("media: bad configuration")
)

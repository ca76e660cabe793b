package edge

import "errors"

// Errors of the edge.
var (
	ErrMessageTooLarge = errors.New("edge: SIP message exceeds the size limit")
	ErrMessageTimeout  = errors.New("edge: SIP message not completed within the read timeout")
	ErrBadFraming      = errors.New("edge: bad Content-Length in stream")
	ErrOverRate        = errors.New("edge: messages over the source's rate")
)

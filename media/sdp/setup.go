package sdp

import (
	"fmt"
	"strings"
)

// Setup is a TCP connection role from a=setup (RFC 4145 section 4).
type Setup string

// The four roles. An m-line without a=setup is active (RFC 4145 section 4.1).
const (
	SetupActive   Setup = "active"   // opens the connection
	SetupPassive  Setup = "passive"  // accepts the connection
	SetupActPass  Setup = "actpass"  // either; offers only: the answerer chooses
	SetupHoldConn Setup = "holdconn" // no connection for now
)

// ParseSetup parses an a=setup value. Values are tokens compared without
// regard to case (RFC 4566 section 9 token rules); surrounding white space
// is ignored. Anything else is an error that wraps ErrBadSetup.
func ParseSetup(v string) (Setup, error) {
	switch s := Setup(strings.ToLower(strings.TrimSpace(v))); s {
	case SetupActive, SetupPassive, SetupActPass, SetupHoldConn:
		return s, nil
	}
	if len(v) > 32 {
		v = v[:32] + "..."
	}
	return "", fmt.Errorf("%w: %q", ErrBadSetup, v)
}

// SetupRole returns the m-line's TCP role: its a=setup value, or active
// when the attribute is absent. It fails for an unknown value, and for
// several a=setup lines that disagree.
func (m Media) SetupRole() (Setup, error) {
	if m.Setup == "" {
		return SetupActive, nil
	}
	var role Setup
	for v := range strings.SplitSeq(m.Setup, "\n") {
		r, err := ParseSetup(v)
		if err != nil {
			return "", err
		}
		if role != "" && r != role {
			return "", fmt.Errorf("%w: conflicting a=setup %s and %s", ErrBadSetup, role, r)
		}
		role = r
	}
	return role, nil
}

// IsTCP reports a TCP-based proto (TCP/BFCP, TCP/TLS/BFCP, TCP/MSRP, ...).
func (m Media) IsTCP() bool {
	p := strings.ToUpper(m.Proto)
	return strings.HasPrefix(p, "TCP") || strings.Contains(p, "/TCP")
}

// RelayableTCP reports whether the TCP relay can carry the m-line: BFCP over
// TCP or over TLS on TCP (RFC 8856). The relay splices the byte stream and
// never terminates TLS, so a=fingerprint passes end to end. Other TCP protos
// are not relayable: MSRP, for one, carries addresses inside its messages.
func (m Media) RelayableTCP() bool {
	switch strings.ToUpper(m.Proto) {
	case "TCP/BFCP", "TCP/TLS/BFCP":
		return true
	}
	return false
}

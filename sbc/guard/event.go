package guard

import "time"

// Action is what the guard decided for a request or packet.
type Action uint8

// Actions, from most to least permissive.
const (
	Allow  Action = iota // serve normally
	Reject               // answer with a SIP status (Verdict.Code)
	Drop                 // send nothing back
)

// String returns allow, reject or drop.
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Reject:
		return "reject"
	case Drop:
		return "drop"
	}
	return "unknown"
}

// MarshalText makes actions readable in JSON and logs.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Event records one refusal: who, what, which rule, why. Every refusal emits exactly one.
type Event struct {
	Time      time.Time `json:"time"`
	Source    string    `json:"source"`    // ip:port of the sender
	Transport string    `json:"transport"` // UDP, TCP, TLS
	Method    string    `json:"method,omitempty"`
	From      string    `json:"from,omitempty"`
	To        string    `json:"to,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Room      string    `json:"room,omitempty"`
	Rule      string    `json:"rule"`   // stable rule name, e.g. "scanner-user-agent"
	Action    Action    `json:"action"` // reject or drop
	Code      int       `json:"code,omitempty"`
	Reason    string    `json:"reason"` // words an admin understands
}

package state

import (
	"net/netip"
	"strconv"
	"time"
)

// InboundMode is a room's policy for calls from outside.
type InboundMode string

// Inbound modes.
const (
	InboundOpen      InboundMode = "open"      // anyone may call
	InboundAllowlist InboundMode = "allowlist" // only callers matching Room.Allow
	InboundDND       InboundMode = "dnd"       // do not disturb: no inbound calls
)

// Room is a room system that registers to Portcullis. Credentials are kept only as HA1 hashes.
type Room struct {
	Name string `json:"name"`
	// HA1MD5 is hex(MD5(name:realm:password)); HA1SHA256 the same with SHA-256 (RFC 8760).
	HA1MD5    string `json:"ha1_md5,omitempty"`
	HA1SHA256 string `json:"ha1_sha256,omitempty"`
	// Inbound is the room's inbound policy; Allow lists caller patterns (user@domain globs,
	// *@domain, domain, IP or CIDR) used by allowlist mode and by drop-in exceptions.
	Inbound InboundMode `json:"inbound"`
	Allow   []string    `json:"allow,omitempty"`
	// DNDCode is the SIP status for refused calls in dnd mode; 0 means drop silently.
	DNDCode int `json:"dnd_code,omitempty"`
	// BlockAutoAnswer strips auto-answer/intercom headers from external callers.
	BlockAutoAnswer bool `json:"block_auto_answer,omitempty"`
	// DenyDropIn refuses a second inbound call while the room is in a call, unless allow-listed.
	DenyDropIn bool      `json:"deny_drop_in,omitempty"`
	Updated    time.Time `json:"updated"`
}

// Binding is one registered contact of a room, with the flow it registered on.
type Binding struct {
	Room    string `json:"room"`
	Contact string `json:"contact"` // Contact URI as the room sent it
	// Source is the address the REGISTER really came from (received/rport), Transport its
	// transport (UDP, TCP, TLS) and Local our listener address it arrived on. Together with
	// Node they name the flow: requests to the room go back over it.
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	Local     string    `json:"local,omitempty"`
	Node      string    `json:"node"`
	CallID    string    `json:"call_id"`
	CSeq      uint32    `json:"cseq"`
	UserAgent string    `json:"user_agent,omitempty"`
	Expires   time.Time `json:"expires"`
	Updated   time.Time `json:"updated"`
	// Instance (+sip.instance) and RegID (reg-id) name an RFC 5626 flow of one UA instance: a
	// room may keep one binding per instance and reg-id, each on its own flow, and a
	// re-registration of the same pair replaces that flow's binding only.
	Instance string `json:"instance,omitempty"`
	RegID    int    `json:"reg_id,omitempty"`
}

// Key identifies the binding among its room's: the instance and reg-id when the room
// registered with +sip.instance (RFC 5626 section 6), otherwise the Contact URI.
func (b Binding) Key() string {
	if b.Instance == "" {
		return b.Contact
	}
	return b.Instance + ";reg-id=" + strconv.Itoa(b.RegID)
}

// Ban refuses every packet from Prefix until Until.
type Ban struct {
	Prefix  netip.Prefix `json:"prefix"`
	Rule    string       `json:"rule"`
	Reason  string       `json:"reason"`
	Strikes int          `json:"strikes"` // how many times this source was banned; bans grow with it
	Created time.Time    `json:"created"`
	Until   time.Time    `json:"until"`
	Node    string       `json:"node,omitempty"`
}

// Lists are the guard's global lists, changeable at run time.
type Lists struct {
	Allow             []string `json:"allow"`               // trusted callers/sources: URI patterns, domains, CIDRs
	Deny              []string `json:"deny"`                // refused callers/sources
	ScannerUserAgents []string `json:"scanner_user_agents"` // substrings (case-insensitive) of scanner User-Agents
}

// CallState is where a call is in its life.
type CallState string

// Call states.
const (
	CallRinging  CallState = "ringing"
	CallAnswered CallState = "answered"
	CallEnded    CallState = "ended"
)

// Direction of a call relative to the room systems.
type Direction string

// Directions.
const (
	Inbound  Direction = "inbound"  // from outside to a room
	Outbound Direction = "outbound" // from a room to outside
)

// Leg identifies one of the two dialogs of a call.
type Leg struct {
	CallID    string `json:"call_id"`
	LocalTag  string `json:"local_tag,omitempty"`
	RemoteTag string `json:"remote_tag,omitempty"`
	Peer      string `json:"peer"` // remote signalling address
	Transport string `json:"transport"`
	// The dialog state a survivor needs to continue the leg when its node dies (calls adopted,
	// adopt.go); empty in calls written by older nodes, which are then ended, not adopted.
	Node       string   `json:"node,omitempty"`        // the node holding this leg
	Local      string   `json:"local,omitempty"`       // our URI on the leg (From of our requests)
	LocalName  string   `json:"local_name,omitempty"`  // its display name
	Remote     string   `json:"remote,omitempty"`      // the peer's URI (To of our requests)
	RemoteName string   `json:"remote_name,omitempty"` // its display name
	Target     string   `json:"target,omitempty"`      // the peer's Contact (remote target)
	Routes     []string `json:"routes,omitempty"`      // route set, in order
	LocalCSeq  uint32   `json:"local_cseq,omitempty"`  // last CSeq we sent on the leg
	RemoteCSeq uint32   `json:"remote_cseq,omitempty"` // last CSeq the peer sent
	SDP        string   `json:"sdp,omitempty"`         // the last SDP the peer sent on the leg
}

// Call is an active call: two legs bridged by one node.
type Call struct {
	ID        string    `json:"id"`
	Room      string    `json:"room"`
	Direction Direction `json:"direction"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Source    string    `json:"source"` // caller's signalling address
	Node      string    `json:"node"`
	State     CallState `json:"state"`
	A         Leg       `json:"a"` // the caller's leg
	B         Leg       `json:"b"` // the callee's leg
	Started   time.Time `json:"started"`
	Answered  time.Time `json:"answered,omitzero"`
	// AdoptedFrom names the node that bridged the call before it died and this call's owner
	// (Node) adopted it (adopt.go).
	AdoptedFrom string `json:"adopted_from,omitempty"`
	// Far is the room's leg of a call handed over the internal trunk, as the node it was handed
	// to (B.Node) holds it: if that node dies, the owner continues the call with it (adopt.go).
	Far Leg `json:"far,omitzero"`
}

// CallRecord is what remains of an ended call.
type CallRecord struct {
	Call
	Seq       uint64        `json:"seq"` // position in the record log, for paging
	Ended     time.Time     `json:"ended"`
	Duration  time.Duration `json:"duration"` // answered to ended; 0 if never answered
	EndReason string        `json:"end_reason"`
	Status    int           `json:"status"` // final SIP status of the call setup
}

// Scope of an admin token.
type Scope string

// Token scopes.
const (
	ScopeRead  Scope = "read"
	ScopeAdmin Scope = "admin"
)

// Token is an admin API token; only its SHA-256 hash is kept.
type Token struct {
	ID      string    `json:"id"`
	Hash    string    `json:"hash"` // hex SHA-256 of the secret
	Scope   Scope     `json:"scope"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// AuditEntry records one write through the admin API.
type AuditEntry struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Who    string    `json:"who"` // token ID and name
	Action string    `json:"action"`
	Target string    `json:"target"`
	Node   string    `json:"node"`
}

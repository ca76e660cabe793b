package guard

// Rule names: stable identifiers that appear in Verdicts, Events, Counts, logs and metrics.
const (
	RuleDenyList      = "deny-list"           // source or caller is on the deny list
	RuleThreatFeed    = "threat-feed"         // source is listed by a threat feed
	RuleBanned        = "banned"              // source is banned
	RuleScanner       = "scanner-user-agent"  // User-Agent (or From display name) of a SIP scanner
	RuleRateLimit     = "rate-limit"          // source sends faster than RequestRate/RequestBurst
	RuleFlood         = "flood"               // source kept sending past the rate limit: banned
	RuleMaxForwards   = "max-forwards"        // Max-Forwards exhausted or out of range
	RuleMalformed     = "malformed"           // From/To/R-URI not sane
	RuleGhostCall     = "ghost-call"          // INVITE to our IP or to a number no room has
	RuleUnknownUser   = "unknown-user"        // INVITE to a user that is not a room
	RuleRelay         = "relay"               // request for a domain or IP that is not ours
	RuleEnumeration   = "enumeration"         // too many different unknown users tried: banned
	RuleBruteForce    = "brute-force"         // too many failed digest or TURN logins: banned
	RuleRoomLocked    = "room-locked"         // too many failed logins for one room: its digest is locked
	RuleRoomAllowlist = "room-allowlist"      // caller not on the room's allow list
	RuleRoomDND       = "room-dnd"            // room does not take calls
	RuleRoomDropIn    = "room-drop-in"        // room is in a call and the caller may not drop in
	RuleRoomPolicy    = "room-policy"         // room has an inbound mode this guard does not know
	RuleMediaPorts    = "media-ports"         // call wanted more relay ports than a call or a source may hold
	RuleRegistration  = "registration-failed" // a configured room's REGISTER failed (reason says why)
)

// ruleID indexes per-rule counters without a map lookup on the hot path.
type ruleID uint8

const (
	ridDenyList ruleID = iota
	ridThreatFeed
	ridBanned
	ridScanner
	ridRateLimit
	ridFlood
	ridMaxForwards
	ridMalformed
	ridGhostCall
	ridUnknownUser
	ridRelay
	ridEnumeration
	ridBruteForce
	ridRoomAllowlist
	ridRoomDND
	ridRoomDropIn
	ridRoomPolicy
	ridMediaPorts
	ridRoomLocked
	ridRegistration
	numRules
)

var ruleNames = [numRules]string{
	ridDenyList: RuleDenyList, ridThreatFeed: RuleThreatFeed, ridBanned: RuleBanned,
	ridScanner: RuleScanner, ridRateLimit: RuleRateLimit, ridFlood: RuleFlood,
	ridMaxForwards: RuleMaxForwards, ridMalformed: RuleMalformed, ridGhostCall: RuleGhostCall,
	ridUnknownUser: RuleUnknownUser, ridRelay: RuleRelay, ridEnumeration: RuleEnumeration,
	ridBruteForce: RuleBruteForce, ridRoomAllowlist: RuleRoomAllowlist, ridRoomDND: RuleRoomDND,
	ridRoomDropIn: RuleRoomDropIn, ridRoomPolicy: RuleRoomPolicy, ridMediaPorts: RuleMediaPorts,
	ridRoomLocked:   RuleRoomLocked,
	ridRegistration: RuleRegistration,
}

func (r ruleID) String() string { return ruleNames[r] }

// Rules returns the names of every rule, in a stable order.
func Rules() []string { return append([]string(nil), ruleNames[:]...) }

// Verdict is the guard's answer for one request.
type Verdict struct {
	Action Action // Allow, Reject (answer with Code) or Drop (answer nothing)
	Code   int    // SIP status for Reject
	Rule   string // which rule refused; "" when allowed
	Reason string // words an admin understands; "" when allowed
}

// Allowed reports whether the request gets normal service.
func (v Verdict) Allowed() bool { return v.Action == Allow }

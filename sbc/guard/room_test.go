package guard

import (
	"net/netip"
	"testing"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

func TestCheckCall(t *testing.T) {
	allow := []string{"*@partner.net", "friends.org", "203.0.113.0/24", "bob@other.example"}
	tests := []struct {
		name   string
		room   state.Room
		req    *Request
		inCall bool
		want   Action
		code   int
		rule   string
		strip  bool
	}{
		{name: "open", room: state.Room{Name: "r", Inbound: state.InboundOpen}, req: invite("198.51.100.7:5060"), want: Allow},
		{name: "empty mode is open", room: state.Room{Name: "r"}, req: invite("198.51.100.7:5060"), want: Allow},
		{name: "allowlist by caller domain glob", room: state.Room{Name: "r", Inbound: state.InboundAllowlist, Allow: allow},
			req: invite("198.51.100.7:5060"), want: Allow},
		{name: "allowlist by domain", room: state.Room{Name: "r", Inbound: state.InboundAllowlist, Allow: allow},
			req: with(invite("198.51.100.7:5060"), func(r *Request) { r.FromHost = "Friends.ORG" }), want: Allow},
		{name: "allowlist by exact URI", room: state.Room{Name: "r", Inbound: state.InboundAllowlist, Allow: allow},
			req: with(invite("198.51.100.7:5060"), func(r *Request) { r.FromUser, r.FromHost = "bob", "other.example" }), want: Allow},
		{name: "allowlist by source CIDR", room: state.Room{Name: "r", Inbound: state.InboundAllowlist, Allow: allow},
			req: with(invite("203.0.113.9:5060"), func(r *Request) { r.FromHost = "unknown.example" }), want: Allow},
		{name: "allowlist refuses others", room: state.Room{Name: "r", Inbound: state.InboundAllowlist, Allow: allow},
			req:  with(invite("198.51.100.7:5060"), func(r *Request) { r.FromUser, r.FromHost = "eve", "other.example" }),
			want: Reject, code: 403, rule: RuleRoomAllowlist},
		{name: "allowlist: a CIDR entry does not match the From host", room: state.Room{Name: "r", Inbound: state.InboundAllowlist, Allow: allow},
			req:  with(invite("198.51.100.7:5060"), func(r *Request) { r.FromHost = "203.0.113.9" }),
			want: Reject, code: 403, rule: RuleRoomAllowlist},
		{name: "dnd with code", room: state.Room{Name: "r", Inbound: state.InboundDND, DNDCode: 480},
			req: invite("198.51.100.7:5060"), want: Reject, code: 480, rule: RuleRoomDND},
		{name: "dnd drops", room: state.Room{Name: "r", Inbound: state.InboundDND},
			req: invite("198.51.100.7:5060"), want: Drop, rule: RuleRoomDND},
		{name: "dnd with a nonsense code answers 486", room: state.Room{Name: "r", Inbound: state.InboundDND, DNDCode: 200},
			req: invite("198.51.100.7:5060"), want: Reject, code: 486, rule: RuleRoomDND},
		{name: "dnd applies to allow-listed callers", room: state.Room{Name: "r", Inbound: state.InboundDND, DNDCode: 486, Allow: allow},
			req: invite("198.51.100.7:5060"), want: Reject, code: 486, rule: RuleRoomDND},
		{name: "unknown mode fails closed", room: state.Room{Name: "r", Inbound: "party"},
			req: invite("198.51.100.7:5060"), want: Reject, code: 403, rule: RuleRoomPolicy},
		{name: "drop-in denied", room: state.Room{Name: "r", Inbound: state.InboundOpen, DenyDropIn: true},
			req: invite("198.51.100.7:5060"), inCall: true, want: Reject, code: 486, rule: RuleRoomDropIn},
		{name: "drop-in denied only while in a call", room: state.Room{Name: "r", Inbound: state.InboundOpen, DenyDropIn: true},
			req: invite("198.51.100.7:5060"), want: Allow},
		{name: "drop-in allowed for allow-listed callers", room: state.Room{Name: "r", Inbound: state.InboundOpen, DenyDropIn: true, Allow: allow},
			req: invite("198.51.100.7:5060"), inCall: true, want: Allow},
		{name: "drop-in allowed without deny", room: state.Room{Name: "r", Inbound: state.InboundOpen},
			req: invite("198.51.100.7:5060"), inCall: true, want: Allow},
		{name: "allowlist room drop-in by a listed caller", room: state.Room{Name: "r", Inbound: state.InboundAllowlist, DenyDropIn: true, Allow: allow},
			req: invite("198.51.100.7:5060"), inCall: true, want: Allow},
		{name: "auto-answer stripped for outsiders", room: state.Room{Name: "r", BlockAutoAnswer: true},
			req: invite("198.51.100.7:5060"), want: Allow, strip: true},
		{name: "auto-answer kept for rooms", room: state.Room{Name: "r", BlockAutoAnswer: true},
			req: with(invite("198.51.100.7:5060"), func(r *Request) { r.Registered = true }), want: Allow},
		{name: "policy comes with refusals too", room: state.Room{Name: "r", Inbound: state.InboundDND, BlockAutoAnswer: true},
			req: invite("198.51.100.7:5060"), want: Drop, rule: RuleRoomDND, strip: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _, _ := newTestGuard(t, nil)
			v, pol := g.CheckCall(tt.req, tt.room, tt.inCall)
			if v.Action != tt.want || v.Code != tt.code || v.Rule != tt.rule || pol.StripAutoAnswer != tt.strip {
				t.Fatalf("CheckCall = %+v %+v, want %s %d %q strip=%v", v, pol, tt.want, tt.code, tt.rule, tt.strip)
			}
			ev := g.Recent(EventFilter{}, 0)
			if tt.want == Allow {
				if len(ev) != 0 {
					t.Fatalf("events for an allowed call: %+v", ev)
				}
				return
			}
			if len(ev) != 1 || ev[0].Room != tt.room.Name || ev[0].Rule != tt.rule || v.Reason == "" {
				t.Fatalf("events = %+v", ev)
			}
		})
	}
}

func TestCheckCallFollowsRoomChanges(t *testing.T) {
	g, _, _ := newTestGuard(t, nil)
	room := state.Room{Name: "r", Inbound: state.InboundAllowlist, Allow: []string{"*@partner.net"}}
	if v, _ := g.CheckCall(invite("198.51.100.7:5060"), room, false); !v.Allowed() {
		t.Fatal(v)
	}
	room.Allow = []string{"*@friends.org", "not a pattern!"}
	if v, _ := g.CheckCall(invite("198.51.100.7:5060"), room, false); v.Rule != RuleRoomAllowlist {
		t.Fatalf("after the allow list changed: %+v", v)
	}
}

func TestAutoAnswer(t *testing.T) {
	tests := []struct {
		name, value string
		want        bool
	}{
		{"Call-Info", "<sip:192.0.2.1>;answer-after=0", true},
		{"call-info", "<sip:192.0.2.1>;Answer-After=0", true},
		{"Call-Info", "<http://www.example.com/alice/photo.jpg>;purpose=icon", false},
		{"Alert-Info", "<http://www.notused.com>;info=alert-autoanswer;delay=0", true},
		{"Alert-Info", "Auto Answer", true},
		{"Alert-Info", "<http://127.0.0.1/Bellcore-dr4>;info=Ring Answer", true},
		{"Alert-Info", "info=intercom", true},
		{"Alert-Info", "<http://www.example.com/sounds/moo.wav>", false},
		{"Answer-Mode", "Auto", true},
		{"Answer-Mode", "Auto;require", true},
		{"Priv-Answer-Mode", "Auto", true},
		{"Answer-Mode", "Manual", false},
		{"P-Auto-Answer", "normal", true},
		{"Subject", "auto answer please", false},
	}
	for _, tt := range tests {
		if got := IsAutoAnswer(tt.name, tt.value); got != tt.want {
			t.Errorf("IsAutoAnswer(%q, %q) = %v", tt.name, tt.value, got)
		}
	}
	names := AutoAnswerHeaders()
	for _, tt := range tests {
		if !tt.want {
			continue
		}
		found := false
		for _, n := range names {
			if equalFoldASCII(n, tt.name) {
				found = true
			}
		}
		if !found {
			t.Errorf("AutoAnswerHeaders lacks %s", tt.name)
		}
	}
	names[0] = "mutated"
	if AutoAnswerHeaders()[0] == "mutated" {
		t.Error("AutoAnswerHeaders shares its slice")
	}
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// TestCheckCallStealthStranger: in stealth mode a stranger's room-policy refusals are drops
// (Quiet), like a name that is no room; allow-listed sources, registered rooms, the node's own
// addresses and trusted sources keep the precise codes; without stealth everyone does.
func TestCheckCallStealthStranger(t *testing.T) {
	dnd := state.Room{Name: "r", Inbound: state.InboundDND, DNDCode: 603}
	vip := state.Room{Name: "r", Inbound: state.InboundAllowlist, Allow: []string{"*@partner.net"}}
	open := state.Room{Name: "r", Inbound: state.InboundOpen}
	strangerFrom := func(f func(*Request)) *Request { // a fresh request per row: with changes it in place
		r := with(invite("198.51.100.7:5060"), func(r *Request) { r.FromHost = "outside.example" })
		if f != nil {
			f(r)
		}
		return r
	}
	stranger := strangerFrom(nil)
	trusted := netip.MustParseAddrPort("192.0.2.50:5060")
	tests := []struct {
		name    string
		stealth bool
		req     *Request
		room    state.Room
		want    Action
		code    int
		quiet   bool
	}{
		{"stranger, dnd", true, stranger, dnd, Drop, 0, true},
		{"stranger, allowlist", true, stranger, vip, Drop, 0, true},
		{"stranger, open room", true, stranger, open, Allow, 0, true},
		{"registered room, dnd", true, strangerFrom(func(r *Request) { r.Registered = true }), dnd, Reject, 603, false},
		{"allow-listed source, allowlist", true, strangerFrom(func(r *Request) { r.Source = netip.MustParseAddrPort("203.0.113.5:5060") }), vip, Reject, 403, false},
		{"node address, dnd", true, strangerFrom(func(r *Request) { r.Source = netip.AddrPortFrom(nodeIP, 5060) }), dnd, Reject, 603, false},
		{"trusted source, dnd", true, strangerFrom(func(r *Request) { r.Source = trusted }), dnd, Reject, 603, false},
		{"no stealth, dnd", false, stranger, dnd, Reject, 603, false},
		{"no stealth, allowlist", false, stranger, vip, Reject, 403, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _, _ := newTestGuard(t, func(c *Config) {
				c.Stealth = tt.stealth
				c.Allow = []string{"203.0.113.0/24"}
				c.Trusted = func(src netip.AddrPort) bool { return src == trusted }
			})
			v, pol := g.CheckCall(tt.req, tt.room, false)
			if v.Action != tt.want || v.Code != tt.code || pol.Quiet != tt.quiet {
				t.Fatalf("CheckCall = %+v %+v, want %s %d quiet=%v", v, pol, tt.want, tt.code, tt.quiet)
			}
		})
	}
}

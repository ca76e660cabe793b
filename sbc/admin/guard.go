package admin

import (
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// Ban limits.
const (
	defaultBan   = time.Hour
	maxBan       = 10 * 365 * 24 * time.Hour
	maxReason    = 200
	minBanBits4  = 8  // an IPv4 ban may not be wider than a /8
	minBanBits6  = 16 // an IPv6 ban may not be wider than a /16
	adminBanRule = "admin"
)

// BanInput adds a ban: Prefix is an IP address or a CIDR prefix, Duration a Go duration
// ("1h", "30m"; default 1h), Reason free text for the operators.
type BanInput struct {
	Prefix   string `json:"prefix"`
	Duration string `json:"duration,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Force bans even a prefix that holds a registered room's flow (which locks the room out).
	Force bool `json:"force,omitempty"`
}

func (s *Server) getLists(w http.ResponseWriter, r *http.Request, _ Principal) error {
	l := s.deps.Store.State().Lists()
	for _, p := range []*[]string{&l.Allow, &l.Deny, &l.ScannerUserAgents} {
		if *p == nil {
			*p = []string{}
		}
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}

func (s *Server) putLists(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in state.Lists
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	if err := checkPatterns("allow", in.Allow); err != nil {
		return err
	}
	if err := checkPatterns("deny", in.Deny); err != nil {
		return err
	}
	for i, ua := range in.ScannerUserAgents {
		if strings.TrimSpace(ua) == "" || strings.IndexFunc(ua, unicode.IsControl) >= 0 || len(ua) > maxPatternSz {
			return invalid("scanner_user_agents["+itoa(i)+"]", "must be a non-blank substring of at most %d characters", maxPatternSz)
		}
	}
	if err := s.propose(r.Context(), p, "lists.set", "guard", state.SetLists(in)); err != nil {
		return err
	}
	return s.getLists(w, r, p)
}

func (s *Server) listBans(w http.ResponseWriter, r *http.Request, _ Principal) error {
	writeJSON(w, http.StatusOK, listOf(s.deps.Store.State().Bans(s.now())))
	return nil
}

func (s *Server) banPath(r *http.Request) (state.Ban, error) {
	v := r.PathValue("prefix")
	p, ok := parsePrefix(v)
	if !ok {
		return state.Ban{}, invalid("prefix", "%q is not an IP address or CIDR prefix", trimForLog(v))
	}
	b, ok := s.deps.Store.State().Ban(p)
	if !ok || !b.Until.After(s.now()) {
		return state.Ban{}, notFound("no ban of %s", p)
	}
	return b, nil
}

func (s *Server) getBan(w http.ResponseWriter, r *http.Request, _ Principal) error {
	b, err := s.banPath(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *Server) addBan(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in BanInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	if in.Prefix == "" {
		return invalid("prefix", "is required")
	}
	pfx, ok := parsePrefix(in.Prefix)
	if !ok {
		return invalid("prefix", "%q is not an IP address or CIDR prefix", trimForLog(in.Prefix))
	}
	if pfx.Addr().Is4() && pfx.Bits() < minBanBits4 || pfx.Addr().Is6() && pfx.Bits() < minBanBits6 {
		return invalid("prefix", "%s is too wide (at most /%d for IPv4, /%d for IPv6); use the deny list", pfx, minBanBits4, minBanBits6)
	}
	d := defaultBan
	if in.Duration != "" {
		var err error
		if d, err = time.ParseDuration(in.Duration); err != nil || d <= 0 || d > maxBan {
			return invalid("duration", "%q must be a positive Go duration (30m, 12h) of at most %s", trimForLog(in.Duration), maxBan)
		}
	}
	if len(in.Reason) > maxReason || strings.IndexFunc(in.Reason, unicode.IsControl) >= 0 {
		return invalid("reason", "must be at most %d characters without control characters", maxReason)
	}
	now := s.now().UTC()
	if !in.Force {
		for _, rb := range s.deps.Store.State().AllBindings(now) {
			if a, ok := eventAddr(rb.Source); ok && pfx.Contains(a) {
				return apiErr(http.StatusConflict, CodeConflict,
					"%s holds the registered flow of room %q (%s); banning it locks the room out: set force to do it anyway",
					pfx, rb.Room, rb.Source)
			}
		}
	}
	b := state.Ban{Prefix: pfx, Rule: adminBanRule, Reason: in.Reason, Strikes: 1, Created: now, Until: now.Add(d),
		Node: s.cfg.NodeID}
	if b.Reason == "" {
		b.Reason = "banned by " + p.String()
	}
	if old, ok := s.deps.Store.State().Ban(pfx); ok {
		b.Strikes = old.Strikes + 1
	}
	if err := s.propose(r.Context(), p, "ban.add", pfx.String(), state.PutBan(b)); err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/guard/bans/"+pfx.String())
	writeJSON(w, http.StatusCreated, b)
	return nil
}

func (s *Server) liftBan(w http.ResponseWriter, r *http.Request, p Principal) error {
	b, err := s.banPath(r)
	if err != nil {
		return err
	}
	if err := s.propose(r.Context(), p, "ban.lift", b.Prefix.String(), state.LiftBan(b.Prefix)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// siteLister is the optional Sites method of Events (*guard.Guard has it).
type siteLister interface{ Sites() []guard.Site }

// listSites lists the addresses rooms registered from (their budget, whether demoted).
func (s *Server) listSites(w http.ResponseWriter, r *http.Request, _ Principal) error {
	var out []guard.Site
	if sl, ok := s.deps.Events.(siteLister); ok {
		out = sl.Sites()
	}
	writeJSON(w, http.StatusOK, listOf(out))
	return nil
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request, _ Principal) error {
	writeJSON(w, http.StatusOK, listOf(guard.Rules()))
	return nil
}

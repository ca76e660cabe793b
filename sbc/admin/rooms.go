package admin

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

var (
	roomNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$`)
	hexRe      = regexp.MustCompile(`^[0-9a-f]+$`)
)

// Limits of room input.
const (
	minPassword  = config.MinPassword
	maxPassword  = config.MaxPassword
	maxPatterns  = 1000
	maxPatternSz = 256
)

// RoomView is a room as the API shows it: policy and which credentials are set, never the
// credentials themselves.
type RoomView struct {
	Name          string            `json:"name"`
	Inbound       state.InboundMode `json:"inbound"`
	Allow         []string          `json:"allow"`
	DNDCode       int               `json:"dnd_code"`
	AutoAnswer    string            `json:"auto_answer"` // block or allow
	DropIn        string            `json:"drop_in"`     // deny or allow
	Credentials   CredentialsView   `json:"credentials"`
	Registrations int               `json:"registrations"`
	// Bindings are the room's live registrations (GET /rooms/{name} only).
	Bindings []state.Binding `json:"bindings,omitempty"`
	Updated  time.Time       `json:"updated"`
}

// CredentialsView says which digest hashes a room has.
type CredentialsView struct {
	MD5    bool `json:"md5"`
	SHA256 bool `json:"sha256"`
}

// RoomInput creates (POST) or changes (PATCH) a room. Absent members keep their value
// (PATCH) or take the default (POST). Credentials are set on POST only (or through
// /credentials): a password, or both-or-either HA1 hash, or generate.
type RoomInput struct {
	Name       *string   `json:"name,omitempty"`
	Password   *string   `json:"password,omitempty"`
	HA1MD5     *string   `json:"ha1_md5,omitempty"`
	HA1SHA256  *string   `json:"ha1_sha256,omitempty"`
	Generate   bool      `json:"generate,omitempty"`
	Inbound    *string   `json:"inbound,omitempty"`
	Allow      *[]string `json:"allow,omitempty"`
	DNDCode    *int      `json:"dnd_code,omitempty"`
	AutoAnswer *string   `json:"auto_answer,omitempty"`
	DropIn     *string   `json:"drop_in,omitempty"`
}

// CredentialsInput sets a room's credentials: exactly one of a password, HA1 hashes, or
// generate. DropRegistrations also removes the room's current registrations.
type CredentialsInput struct {
	Password          *string `json:"password,omitempty"`
	HA1MD5            *string `json:"ha1_md5,omitempty"`
	HA1SHA256         *string `json:"ha1_sha256,omitempty"`
	Generate          bool    `json:"generate,omitempty"`
	DropRegistrations bool    `json:"drop_registrations,omitempty"`
}

// RoomCreated answers a room creation or a credentials change; Password is set only when
// the server generated it, and is shown this once.
type RoomCreated struct {
	Room     RoomView `json:"room"`
	Password string   `json:"password,omitempty"`
}

func (s *Server) view(r state.Room, withBindings bool) RoomView {
	v := RoomView{
		Name: r.Name, Inbound: r.Inbound, Allow: r.Allow, DNDCode: r.DNDCode,
		AutoAnswer: "allow", DropIn: "allow", Updated: r.Updated,
		Credentials: CredentialsView{MD5: r.HA1MD5 != "", SHA256: r.HA1SHA256 != ""},
	}
	if v.Allow == nil {
		v.Allow = []string{}
	}
	if r.BlockAutoAnswer {
		v.AutoAnswer = "block"
	}
	if r.DenyDropIn {
		v.DropIn = "deny"
	}
	b := s.deps.Store.State().Bindings(r.Name, s.now())
	v.Registrations = len(b)
	if withBindings {
		v.Bindings = b
	}
	return v
}

func (s *Server) listRooms(w http.ResponseWriter, r *http.Request, _ Principal) error {
	rooms := s.deps.Store.State().Rooms()
	out := make([]RoomView, 0, len(rooms))
	for _, rm := range rooms {
		out = append(out, s.view(rm, false))
	}
	writeJSON(w, http.StatusOK, listOf(out))
	return nil
}

func (s *Server) roomOr404(name string) (state.Room, error) {
	rm, ok := s.deps.Store.State().Room(name)
	if !ok {
		return rm, notFound("no room %q", name)
	}
	return rm, nil
}

func (s *Server) getRoom(w http.ResponseWriter, r *http.Request, _ Principal) error {
	rm, err := s.roomOr404(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.view(rm, true))
	return nil
}

func (s *Server) createRoom(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in RoomInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	if in.Name == nil || *in.Name == "" {
		return invalid("name", "is required")
	}
	if !roomNameRe.MatchString(*in.Name) {
		return invalid("name", "must be 1-64 letters, digits, '.', '_', '~' or '-', starting with a letter or digit")
	}
	rm := state.Room{Name: *in.Name, Inbound: state.InboundOpen, DNDCode: 486, BlockAutoAnswer: true, DenyDropIn: true}
	if err := applyPolicy(&rm, &in); err != nil {
		return err
	}
	generated, err := s.applyCredentials(&rm, CredentialsInput{Password: in.Password, HA1MD5: in.HA1MD5,
		HA1SHA256: in.HA1SHA256, Generate: in.Generate})
	if err != nil {
		return err
	}
	if _, exists := s.deps.Store.State().Room(rm.Name); exists {
		return apiErr(http.StatusConflict, CodeConflict, "room %q already exists (PATCH it, or DELETE it first)", rm.Name)
	}
	rm.Updated = s.now().UTC()
	if err := s.propose(r.Context(), p, "room.create", rm.Name, state.PutRoom(rm)); err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/rooms/"+rm.Name)
	writeJSON(w, http.StatusCreated, RoomCreated{Room: s.view(rm, false), Password: generated})
	return nil
}

func (s *Server) updateRoom(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in RoomInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	rm, err := s.roomOr404(r.PathValue("name"))
	if err != nil {
		return err
	}
	switch {
	case in.Name != nil && *in.Name != rm.Name:
		return invalid("name", "a room cannot be renamed; create a new one")
	case in.Password != nil:
		return invalid("password", "set credentials with POST /api/v1/rooms/%s/credentials", rm.Name)
	case in.HA1MD5 != nil:
		return invalid("ha1_md5", "set credentials with POST /api/v1/rooms/%s/credentials", rm.Name)
	case in.HA1SHA256 != nil:
		return invalid("ha1_sha256", "set credentials with POST /api/v1/rooms/%s/credentials", rm.Name)
	case in.Generate:
		return invalid("generate", "set credentials with POST /api/v1/rooms/%s/credentials", rm.Name)
	}
	if err := applyPolicy(&rm, &in); err != nil {
		return err
	}
	rm.Updated = s.now().UTC()
	if err := s.propose(r.Context(), p, "room.update", rm.Name, state.PutRoom(rm)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.view(rm, false))
	return nil
}

func (s *Server) deleteRoom(w http.ResponseWriter, r *http.Request, p Principal) error {
	rm, err := s.roomOr404(r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := s.propose(r.Context(), p, "room.delete", rm.Name, state.DeleteRoom(rm.Name)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) setCredentials(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in CredentialsInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	rm, err := s.roomOr404(r.PathValue("name"))
	if err != nil {
		return err
	}
	generated, err := s.applyCredentials(&rm, in)
	if err != nil {
		return err
	}
	rm.Updated = s.now().UTC()
	cmds := []state.Command{state.PutRoom(rm)}
	if in.DropRegistrations {
		cmds = append(cmds, state.DeleteRoomBindings(rm.Name))
	}
	if err := s.propose(r.Context(), p, "room.credentials", rm.Name, cmds...); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, RoomCreated{Room: s.view(rm, false), Password: generated})
	return nil
}

// applyPolicy validates and applies the policy members of in.
func applyPolicy(rm *state.Room, in *RoomInput) error {
	if in.Inbound != nil {
		switch m := state.InboundMode(*in.Inbound); m {
		case state.InboundOpen, state.InboundAllowlist, state.InboundDND:
			rm.Inbound = m
		default:
			return invalid("inbound", "%q must be open, allowlist or dnd", trimForLog(*in.Inbound))
		}
	}
	if in.Allow != nil {
		if err := checkPatterns("allow", *in.Allow); err != nil {
			return err
		}
		rm.Allow = append([]string(nil), *in.Allow...)
	}
	if in.DNDCode != nil {
		if c := *in.DNDCode; c != 0 && (c < 400 || c > 699) {
			return invalid("dnd_code", "%d must be 0 (drop silently) or a SIP status from 400 to 699", c)
		}
		rm.DNDCode = *in.DNDCode
	}
	if in.AutoAnswer != nil {
		switch *in.AutoAnswer {
		case "block", "allow":
			rm.BlockAutoAnswer = *in.AutoAnswer == "block"
		default:
			return invalid("auto_answer", "%q must be block or allow", trimForLog(*in.AutoAnswer))
		}
	}
	if in.DropIn != nil {
		switch *in.DropIn {
		case "deny", "allow":
			rm.DenyDropIn = *in.DropIn == "deny"
		default:
			return invalid("drop_in", "%q must be deny or allow", trimForLog(*in.DropIn))
		}
	}
	if rm.Inbound == state.InboundAllowlist && len(rm.Allow) == 0 {
		return invalid("allow", "inbound allowlist needs at least one allow entry (or every call is refused: use dnd)")
	}
	return nil
}

// checkPatterns validates caller/source patterns: non-empty, no spaces or control characters.
func checkPatterns(field string, ps []string) error {
	if len(ps) > maxPatterns {
		return invalid(field, "at most %d entries", maxPatterns)
	}
	for i, p := range ps {
		f := field + "[" + itoa(i) + "]"
		switch {
		case p == "":
			return invalid(f, "empty entry")
		case len(p) > maxPatternSz:
			return invalid(f, "longer than %d characters", maxPatternSz)
		case strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return invalid(f, "%q contains a space or a control character", trimForLog(p))
		}
	}
	return nil
}

// applyCredentials sets rm's HA1 hashes from exactly one of the three forms; it returns the
// generated password, if any.
func (s *Server) applyCredentials(rm *state.Room, in CredentialsInput) (string, error) {
	forms := 0
	for _, set := range []bool{in.Password != nil, in.HA1MD5 != nil || in.HA1SHA256 != nil, in.Generate} {
		if set {
			forms++
		}
	}
	if forms != 1 {
		return "", invalid("password", "give exactly one of password, ha1_md5/ha1_sha256, or generate")
	}
	switch {
	case in.Password != nil:
		pw := *in.Password
		if n := len([]rune(pw)); n < minPassword || n > maxPassword {
			return "", invalid("password", "must be %d to %d characters", minPassword, maxPassword)
		}
		if strings.IndexFunc(pw, unicode.IsControl) >= 0 {
			return "", invalid("password", "must not contain control characters")
		}
		s.setPassword(rm, pw)
		return "", nil
	case in.Generate:
		var b [18]byte
		_, _ = rand.Read(b[:])
		pw := base64.RawURLEncoding.EncodeToString(b[:])
		s.setPassword(rm, pw)
		return pw, nil
	}
	rm.HA1MD5, rm.HA1SHA256 = "", ""
	if in.HA1MD5 != nil {
		if h := *in.HA1MD5; len(h) != 32 || !hexRe.MatchString(h) {
			return "", invalid("ha1_md5", "must be 32 lowercase hex digits: hex(MD5(name:%s:password))", s.deps.Domain)
		}
		rm.HA1MD5 = *in.HA1MD5
	}
	if in.HA1SHA256 != nil {
		if h := *in.HA1SHA256; len(h) != 64 || !hexRe.MatchString(h) {
			return "", invalid("ha1_sha256", "must be 64 lowercase hex digits: hex(SHA-256(name:%s:password))", s.deps.Domain)
		}
		rm.HA1SHA256 = *in.HA1SHA256
	}
	return "", nil
}

func (s *Server) setPassword(rm *state.Room, pw string) {
	rm.HA1MD5 = digest.HA1(digest.MD5, rm.Name, s.deps.Domain, pw)
	rm.HA1SHA256 = digest.HA1(digest.SHA256, rm.Name, s.deps.Domain, pw)
}

func (s *Server) listRegistrations(w http.ResponseWriter, r *http.Request, _ Principal) error {
	st := s.deps.Store.State()
	room := r.URL.Query().Get("room")
	var out []state.Binding
	if room != "" {
		if _, ok := st.Room(room); !ok {
			return notFound("no room %q", room)
		}
		out = st.Bindings(room, s.now())
	} else {
		out = st.AllBindings(s.now())
	}
	writeJSON(w, http.StatusOK, listOf(out))
	return nil
}

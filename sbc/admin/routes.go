package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// handlerFunc serves one API route for an authorised principal; a returned error is rendered
// in the one error shape.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p Principal) error

// route is one API operation. The table (apiRoutes) is the single source of truth for the mux,
// the scopes and the query parameters; the OpenAPI test compares it with openapi.json.
type route struct {
	method  string
	pattern string      // ServeMux path, e.g. /api/v1/rooms/{name}
	scope   state.Scope // needed scope; "" is public
	query   []string    // accepted query parameters (authenticated GETs also accept "consistent")
	h       handlerFunc
}

// apiRoutes is the API.
func (s *Server) apiRoutes() []route {
	const (
		R = state.ScopeRead
		A = state.ScopeAdmin
	)
	return []route{
		{"GET", "/api/v1/openapi.json", "", nil, s.openAPI},
		{"GET", "/api/v1/health", R, nil, s.getHealth},
		{"GET", "/api/v1/node/doctor", R, nil, s.getDoctor},

		{"GET", "/api/v1/rooms", R, nil, s.listRooms},
		{"POST", "/api/v1/rooms", A, nil, s.createRoom},
		{"GET", "/api/v1/rooms/{name}", R, nil, s.getRoom},
		{"PATCH", "/api/v1/rooms/{name}", A, nil, s.updateRoom},
		{"DELETE", "/api/v1/rooms/{name}", A, nil, s.deleteRoom},
		{"POST", "/api/v1/rooms/{name}/credentials", A, nil, s.setCredentials},

		{"GET", "/api/v1/registrations", R, []string{"room"}, s.listRegistrations},

		{"GET", "/api/v1/calls", R, []string{"room"}, s.listCalls},
		{"GET", "/api/v1/calls/{id}", R, nil, s.getCall},
		{"DELETE", "/api/v1/calls/{id}", A, nil, s.hangupCall},

		{"GET", "/api/v1/records", R, []string{"room", "end_reason", "since", "until", "order", "limit", "cursor"}, s.listRecords},

		{"GET", "/api/v1/guard/lists", R, nil, s.getLists},
		{"PUT", "/api/v1/guard/lists", A, nil, s.putLists},
		{"GET", "/api/v1/guard/bans", R, nil, s.listBans},
		{"POST", "/api/v1/guard/bans", A, nil, s.addBan},
		{"GET", "/api/v1/guard/bans/{prefix...}", R, nil, s.getBan},
		{"DELETE", "/api/v1/guard/bans/{prefix...}", A, nil, s.liftBan},
		{"GET", "/api/v1/guard/rules", R, nil, s.listRules},
		{"GET", "/api/v1/guard/sites", R, nil, s.listSites},

		{"GET", "/api/v1/events", R, []string{"rule", "room", "source", "since", "limit"}, s.listEvents},
		{"GET", "/api/v1/events/stream", R, []string{"rule", "room", "source"}, s.streamEvents},
		{"GET", "/api/v1/events/summary", R, []string{"hours", "top"}, s.eventSummary},

		{"GET", "/api/v1/cluster/members", R, nil, s.listMembers},
		{"POST", "/api/v1/cluster/members", A, nil, s.joinMember},
		{"DELETE", "/api/v1/cluster/members/{id}", A, nil, s.removeMember},
		{"GET", "/api/v1/cluster/leader", R, nil, s.getLeader},

		{"GET", "/api/v1/tokens", A, nil, s.listTokens},
		{"POST", "/api/v1/tokens", A, nil, s.createToken},
		{"DELETE", "/api/v1/tokens/{id}", A, nil, s.deleteToken},

		{"GET", "/api/v1/audit", R, []string{"limit", "cursor"}, s.listAudit},
	}
}

// statusWriter remembers the status for metrics; Unwrap lets http.ResponseController reach the
// connection (flush, deadlines) for the event stream.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap applies authentication, scope, query validation and consistent reads to a route.
func (s *Server) wrap(rt *route) http.Handler {
	label := rt.method + " " + strings.ReplaceAll(rt.pattern, "...", "")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.metrics.apiRequests.WithLabelValues(label, strconv.Itoa(sw.status)).Inc() }()
		if err := s.notReady(rt); err != nil {
			sw.Header().Set("Retry-After", notReadyRetryAfter)
			s.writeError(sw, r, err)
			return
		}
		p, err := s.authorize(r, rt.scope)
		if err == nil {
			err = checkQuery(r, rt)
		}
		if err == nil && r.Method == http.MethodGet && r.URL.Query().Has("consistent") {
			err = s.consistentRead(r)
		}
		if err == nil {
			err = rt.h(sw, r, p)
		}
		if err != nil {
			s.writeError(sw, r, err)
		}
	})
}

// authorize checks the bearer token against the scope a route needs. A missing token is a
// plain 401; a wrong one also counts against the source's failure budget and is logged.
func (s *Server) authorize(r *http.Request, need state.Scope) (Principal, error) {
	if need == "" {
		return Principal{}, nil
	}
	src, now := remoteAddr(r), s.now()
	secret, ok := bearer(r)
	if !ok || secret == "" {
		s.metrics.authFailures.WithLabelValues("missing").Inc()
		return Principal{}, apiErr(http.StatusUnauthorized, CodeUnauthorized,
			"a bearer token is required (Authorization: Bearer …; create one with `portcullis token create`)")
	}
	// The failure budget is per source and token: a flood of wrong tokens from a shared address
	// locks those out, not the valid token of an operator behind the same address.
	sum := sha256.Sum256([]byte(secret))
	if s.limiter.blocked(src, sum, now) {
		s.metrics.authFailures.WithLabelValues("rate_limited").Inc()
		return Principal{}, apiErr(http.StatusTooManyRequests, CodeRateLimited,
			"too many failed authentications with this token from %s; retry later", src)
	}
	p, ok := s.authenticate(sum)
	if !ok {
		s.metrics.authFailures.WithLabelValues("bad_token").Inc()
		if s.limiter.fail(src, sum, now) {
			s.log.Warn("admin authentication failed", "remote", src, "path", r.URL.Path, "reason", "unknown token")
		}
		return Principal{}, apiErr(http.StatusUnauthorized, CodeUnauthorized, "unknown or revoked token")
	}
	if need == state.ScopeAdmin && p.Scope != state.ScopeAdmin {
		s.log.Info("admin write refused: read-only token", "who", p.String(), "method", r.Method, "path", r.URL.Path)
		return p, apiErr(http.StatusForbidden, CodeForbidden, "token %s has scope %q; %s %s needs scope admin",
			p.ID, p.Scope, r.Method, r.URL.Path)
	}
	return p, nil
}

func checkQuery(r *http.Request, rt *route) error {
	for k := range r.URL.Query() {
		if slices.Contains(rt.query, k) || k == "consistent" && r.Method == http.MethodGet && rt.scope != "" {
			continue
		}
		accepted := "none"
		if len(rt.query) > 0 {
			accepted = strings.Join(rt.query, ", ")
		}
		return invalid(k, "unknown query parameter (accepted: %s)", accepted)
	}
	return nil
}

// consistentRead makes this node catch up with the cluster before a read (?consistent=true).
func (s *Server) consistentRead(r *http.Request) error {
	v, err := strconv.ParseBool(r.URL.Query().Get("consistent"))
	if err != nil {
		return invalid("consistent", "must be true or false")
	}
	if !v || s.deps.Cluster == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), consistentTimeout)
	defer cancel()
	if err := s.deps.Cluster.Consistent(ctx); err != nil {
		return fmt.Errorf("consistent read: %w", err)
	}
	return nil
}

// decodeBody reads a JSON request body into v strictly: application/json only, at most 1 MiB,
// no unknown members, one value. Errors name the offending field.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return apiErr(http.StatusUnsupportedMediaType, CodeUnsupportedMedia,
			"request body must be application/json (got %q)", trimForLog(ct))
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apiErr(http.StatusBadRequest, CodeBadRequest, "request body must hold exactly one JSON value")
	}
	return nil
}

func bodyError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		big *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return apiErr(http.StatusBadRequest, CodeBadRequest, "request body is empty")
	case errors.As(err, &big):
		return apiErr(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body exceeds %d bytes", maxBody)
	case errors.As(err, &syn):
		return apiErr(http.StatusBadRequest, CodeBadRequest, "malformed JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		f := typ.Field
		if f == "" {
			f = "(body)"
		}
		return invalid(f, "must be %s", jsonType(typ.Type.Kind().String()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiErr(http.StatusBadRequest, CodeBadRequest, "malformed JSON: unexpected end of body")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return invalid(f, "unknown field")
	}
	return apiErr(http.StatusBadRequest, CodeBadRequest, "malformed JSON: %v", err)
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	}
	return "a " + kind
}

// qInt parses an integer query parameter within [lo, hi]; def when absent.
func qInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, invalid(name, "must be an integer from %d to %d", lo, hi)
	}
	return n, nil
}

// qTime parses a time query parameter: RFC 3339, or a duration meaning that long ago ("90m").
func qTime(r *http.Request, name string, now time.Time) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, invalid(name, "must be an RFC 3339 time (2006-01-02T15:04:05Z) or a duration ago (90m)")
}

// parsePrefix accepts an IP address (a /32 or /128) or a CIDR prefix.
func parsePrefix(v string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(v); err == nil {
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
		}
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(v); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// list is the envelope of every list response; NextCursor is set on paged lists when more
// items follow.
type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func listOf[T any](items []T) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{Items: items}
}

// pageArgs reads the page size (limit) and the cursor (the Seq to read after) of a paged list.
func pageArgs(r *http.Request) (limit int, after uint64, err error) {
	if limit, err = qInt(r, "limit", defaultPage, 1, maxPage); err != nil {
		return 0, 0, err
	}
	after, err = parseCursor(r)
	return limit, after, err
}

// pageOf is the page of a paged list: items holds up to limit+1 entries read past the cursor,
// and the extra one, when there, only says that another page follows (from the Seq of the
// last entry shown).
func pageOf[T any](items []T, limit int, seq func(T) uint64) list[T] {
	out := listOf(items)
	if len(items) > limit {
		out.Items = items[:limit]
		out.NextCursor = cursor(seq(items[limit-1]))
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

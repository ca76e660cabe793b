package admin

import (
	"cmp"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Paging bounds.
const (
	defaultPage = 100
	maxPage     = 1000
)

// CallDetail is one call with its per-stream media statistics, when this node bridges it.
type CallDetail struct {
	state.Call
	Media any `json:"media,omitempty"`
}

// calls returns the active calls: the cluster's answered calls from the state, merged with
// this node's own live calls (ringing ones too) when Calls can list them.
func (s *Server) calls() []state.Call {
	all := s.deps.Store.State().Calls()
	lc, ok := s.deps.Calls.(LocalCalls)
	if !ok {
		return all
	}
	byID := make(map[string]int, len(all))
	for i, c := range all {
		byID[c.ID] = i
	}
	for _, c := range lc.Calls() {
		if i, seen := byID[c.ID]; seen {
			all[i] = c
		} else {
			all = append(all, c)
		}
	}
	slices.SortFunc(all, func(a, b state.Call) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	for i := range all {
		all[i] = all[i].Public() // no SDP (SRTP keys) nor dialog state for adoption
	}
	return all
}

func (s *Server) findCall(id string) (state.Call, bool) {
	if c, ok := s.deps.Store.State().Call(id); ok {
		return c.Public(), true
	}
	if lc, ok := s.deps.Calls.(LocalCalls); ok {
		for _, c := range lc.Calls() {
			if c.ID == id {
				return c.Public(), true
			}
		}
	}
	return state.Call{}, false
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request, _ Principal) error {
	room := r.URL.Query().Get("room")
	all := s.calls()
	out := all[:0:0]
	for _, c := range all {
		if room == "" || c.Room == room {
			out = append(out, c)
		}
	}
	writeJSON(w, http.StatusOK, listOf(out))
	return nil
}

func (s *Server) getCall(w http.ResponseWriter, r *http.Request, _ Principal) error {
	id := r.PathValue("id")
	c, ok := s.findCall(id)
	if !ok {
		return notFound("no active call %q", id)
	}
	d := CallDetail{Call: c}
	if s.deps.Calls != nil {
		if m, ok := s.deps.Calls.MediaStats(id); ok {
			d.Media = m
		}
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// hangupCall ends a call from any node. The owner hangs up a call it holds (BYE on both legs,
// its own record). Any other call the state lists is ended in the state (record "ended by
// admin"): a call of another node, which that node, if alive, sees and hangs up; a call whose
// owner is gone or restarted (a ghost). 404 only when no node has the call.
func (s *Server) hangupCall(w http.ResponseWriter, r *http.Request, p Principal) error {
	id := r.PathValue("id")
	c, ok := s.findCall(id)
	if !ok {
		return notFound("no active call %q", id)
	}
	mine := c.Node == "" || s.cfg.NodeID == "" || c.Node == s.cfg.NodeID
	if mine && s.deps.Calls != nil {
		err := s.deps.Calls.Hangup(r.Context(), id)
		if err == nil {
			s.audit(r.Context(), p.String(), "call.hangup", id)
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if !errors.Is(err, state.ErrNotFound) && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if _, ok := s.deps.Store.State().Call(id); !ok {
		return notFound("no active call %q", id)
	}
	cmd := state.EndCallsByID([]string{id}, c.Node, state.ReasonAdmin, s.cfg.NodeID, s.now())
	if err := s.propose(r.Context(), p, "call.hangup", id, cmd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cursor encodes a sequence number as an opaque paging cursor.
func cursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s" + strconv.FormatUint(seq, 10)))
}

func parseCursor(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get("cursor")
	if v == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err == nil {
		if rest, ok := strings.CutPrefix(string(b), "s"); ok {
			if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
				return n, nil
			}
		}
	}
	return 0, invalid("cursor", "is not a cursor this API returned (use next_cursor verbatim)")
}

func (s *Server) listRecords(w http.ResponseWriter, r *http.Request, _ Principal) error {
	now := s.now()
	limit, after, err := pageArgs(r)
	if err != nil {
		return err
	}
	since, err := qTime(r, "since", now)
	if err != nil {
		return err
	}
	until, err := qTime(r, "until", now)
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return invalid("until", "must be after since")
	}
	q := r.URL.Query()
	rq := state.RecordQuery{Room: q.Get("room"), EndReason: q.Get("end_reason"), Since: since, Until: until,
		AfterSeq: after, Limit: limit + 1}
	switch q.Get("order") {
	case "", "oldest":
	case "newest":
		rq.Newest, rq.AfterSeq, rq.BeforeSeq = true, 0, after
	default:
		return invalid("order", "must be oldest or newest")
	}
	recs := s.deps.Store.State().Records(rq)
	writeJSON(w, http.StatusOK, pageOf(recs, limit, func(r state.CallRecord) uint64 { return r.Seq }))
	return nil
}

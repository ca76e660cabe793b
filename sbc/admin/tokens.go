package admin

import (
	"context"
	"net/http"
	"regexp"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

var tokenNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$`)

// TokenInput creates a token.
type TokenInput struct {
	Scope state.Scope `json:"scope"` // read or admin
	Name  string      `json:"name"`  // who or what uses it, e.g. "ops" or "prometheus"
}

// TokenView is a token without its hash.
type TokenView struct {
	ID      string      `json:"id"`
	Name    string      `json:"name"`
	Scope   state.Scope `json:"scope"`
	Created time.Time   `json:"created"`
}

// TokenCreated answers a token creation: the secret is shown this once and never again.
type TokenCreated struct {
	TokenView
	Secret string `json:"secret"`
}

func tokenView(t state.Token) TokenView {
	return TokenView{ID: t.ID, Name: t.Name, Scope: t.Scope, Created: t.Created}
}

func (s *Server) tokenViews() []TokenView {
	ts := s.deps.Store.State().Tokens()
	out := make([]TokenView, 0, len(ts))
	for _, t := range ts {
		out = append(out, tokenView(t))
	}
	return out
}

// mintToken validates in, stores a new token and returns it with its secret.
func (s *Server) mintToken(ctx context.Context, who string, in TokenInput) (TokenCreated, error) {
	if in.Scope != state.ScopeRead && in.Scope != state.ScopeAdmin {
		return TokenCreated{}, invalid("scope", "%q must be read or admin", trimForLog(string(in.Scope)))
	}
	if !tokenNameRe.MatchString(in.Name) {
		return TokenCreated{}, invalid("name", "must be 1-64 letters, digits, spaces, '.', '_', '@' or '-'")
	}
	secret, hash := NewSecret()
	t := state.Token{ID: newTokenID(), Hash: hash, Scope: in.Scope, Name: in.Name, Created: s.now().UTC()}
	if err := s.deps.Store.Propose(ctx, state.PutToken(t)); err != nil {
		return TokenCreated{}, err
	}
	s.audit(ctx, who, "token.create", t.ID+" ("+t.Name+", "+string(t.Scope)+")")
	s.settle(ctx)
	return TokenCreated{TokenView: tokenView(t), Secret: secret}, nil
}

func (s *Server) revokeToken(ctx context.Context, who, id string) error {
	if err := s.deps.Store.Propose(ctx, state.DeleteToken(id)); err != nil {
		return err
	}
	s.audit(ctx, who, "token.delete", id)
	s.settle(ctx)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, _ Principal) error {
	writeJSON(w, http.StatusOK, listOf(s.tokenViews()))
	return nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in TokenInput
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	t, err := s.mintToken(r.Context(), p.String(), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := s.revokeToken(r.Context(), p.String(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, _ Principal) error {
	limit, after, err := pageArgs(r)
	if err != nil {
		return err
	}
	es := s.deps.Store.State().AuditLog(after, limit+1)
	writeJSON(w, http.StatusOK, pageOf(es, limit, func(e state.AuditEntry) uint64 { return e.Seq }))
	return nil
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Errors of the admin package.
var (
	// ErrConfig: New was given an unusable Config or Deps.
	ErrConfig = errors.New("admin: invalid config")
	// ErrNotFound may be wrapped by a Calls implementation for an unknown call.
	ErrNotFound = errors.New("admin: not found")
	// ErrClosed: Serve was called after Close.
	ErrClosed = errors.New("admin: server closed")
)

// Error codes: the "error" member of every error body. Stable: clients switch on them.
const (
	CodeBadRequest       = "bad_request"            // malformed body, query or path
	CodeInvalid          = "invalid"                // a field has a bad value; "field" names it
	CodeUnauthorized     = "unauthorized"           // no token, or an unknown one
	CodeForbidden        = "forbidden"              // the token's scope does not allow this
	CodeBadHost          = "bad_host"               // Host or Origin refused (DNS rebinding)
	CodeNotFound         = "not_found"              // no such route or object
	CodeMethodNotAllowed = "method_not_allowed"     // the route exists with other methods (see Allow)
	CodeConflict         = "conflict"               // the object already exists
	CodeOtherNode        = "other_node"             // the call is bridged by another node
	CodeSingleNode       = "single_node"            // cluster operation on a node without a cluster
	CodeUnsupportedMedia = "unsupported_media_type" // request body is not application/json
	CodeTooLarge         = "payload_too_large"      // request body over 1 MiB
	CodeRateLimited      = "rate_limited"           // too many failed authentications from this source
	CodeNoLeader         = "no_leader"              // the cluster has no reachable leader
	CodeOutcomeUnknown   = "outcome_unknown"        // the write may or may not have been applied
	CodeUnavailable      = "unavailable"            // the capability is not wired on this node, or it is closing
	CodeTimeout          = "timeout"                // the operation did not finish in time
	CodeInternal         = "internal"               // a bug or an unexpected failure (logged)
)

// APIError is the one error type the API renders: {"error": Code, "message": Message,
// "field": Field}.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
	// Field names the offending input (JSON member or query parameter), when there is one.
	Field string `json:"field,omitempty"`
}

// Error renders the error for logs and Go callers.
func (e *APIError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return e.Code + ": " + e.Message
}

func apiErr(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// invalid reports a bad value of one field.
func invalid(field, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: CodeInvalid, Field: field,
		Message: field + ": " + fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *APIError {
	return apiErr(http.StatusNotFound, CodeNotFound, format, args...)
}

// classify turns any error into an APIError with the right status.
func classify(err error) *APIError {
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, state.ErrNotFound), errors.Is(err, ErrNotFound), errors.Is(err, cluster.ErrUnknownMember):
		return apiErr(http.StatusNotFound, CodeNotFound, "%s", err.Error())
	case errors.Is(err, state.ErrBadPayload), errors.Is(err, cluster.ErrJoin):
		return apiErr(http.StatusBadRequest, CodeBadRequest, "%s", err.Error())
	case errors.Is(err, cluster.ErrNoLeader):
		return apiErr(http.StatusServiceUnavailable, CodeNoLeader, "%s", err.Error())
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		return apiErr(http.StatusServiceUnavailable, CodeOutcomeUnknown, "%s", err.Error())
	case errors.Is(err, cluster.ErrClosed), errors.Is(err, cluster.ErrHalted), errors.Is(err, ErrClosed):
		return apiErr(http.StatusServiceUnavailable, CodeUnavailable, "%s", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return apiErr(http.StatusGatewayTimeout, CodeTimeout, "%s", err.Error())
	}
	return apiErr(http.StatusInternalServerError, CodeInternal, "internal error")
}

// writeError renders err in the one error shape. Unexpected errors are logged with the request
// and answered with a generic message (no internals leak to clients).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	if ae.Code == CodeInternal {
		s.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	if ae.Code == CodeRateLimited {
		w.Header().Set("Retry-After", "60")
	}
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
	}
	writeJSON(w, ae.Status, ae)
}

// writeJSON writes v as the JSON response body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal","message":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

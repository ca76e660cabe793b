package admin

import "net/http"

// notReadyRetryAfter is the Retry-After (seconds) of an API call refused while the node
// catches up with the cluster.
const notReadyRetryAfter = "5"

// notReady refuses a route while the node is not ready (Deps.Ready); the health route still
// answers, with the reason.
func (s *Server) notReady(rt *route) error {
	if s.deps.Ready == nil || rt.pattern == "/api/v1/health" {
		return nil
	}
	if err := s.deps.Ready(); err != nil {
		return apiErr(http.StatusServiceUnavailable, CodeUnavailable,
			"this node is not ready (%v); retry shortly or use another node", err)
	}
	return nil
}

package admin

import (
	_ "embed"
	"net/http"
)

// openAPISpec is the OpenAPI 3 description of /api/v1, served as is. TestOpenAPIMatchesRoutes
// fails when it and the route table disagree.
//
//go:embed openapi.json
var openAPISpec []byte

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request, _ Principal) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPISpec)
	return nil
}

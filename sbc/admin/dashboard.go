package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// dashboardFiles are the read-only web dashboard: plain HTML, CSS and JavaScript, no build step
// and nothing fetched from outside the node.
//
//go:embed dashboard
var dashboardFiles embed.FS

// dashboardCSP lets the dashboard load only its own files and talk only to this API.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboardHandler serves the embedded dashboard under /dashboard/.
func dashboardHandler() http.Handler {
	sub, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded tree always has the directory
	}
	files := http.StripPrefix("/dashboard/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", dashboardCSP)
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

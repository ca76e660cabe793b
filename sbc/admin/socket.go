package admin

import (
	"context"

	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The token socket is how the first token is made: whoever can open DATA_DIR/admin.sock (mode
// 0600, so the node's own user or root) may create, list and revoke tokens without one. It
// speaks HTTP with the same JSON shapes as /api/v1/tokens:
//
//	POST   /v1/tokens        {"scope": "admin", "name": "ops"}  → 201 TokenCreated
//	GET    /v1/tokens                                          → 200 {"items": [TokenView]}
//	DELETE /v1/tokens/{id}                                     → 204

// listenSocket binds the unix socket at path with mode 0600 from the first moment: it is bound
// inside a fresh 0700 directory, chmodded, then renamed into place, so no other user can
// connect in the window between bind and chmod.
func listenSocket(path string, log *slog.Logger) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is served by another process (is another node running on this data dir?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp(dir, ".admin-sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // Close removes the renamed path itself
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, err
	}
	return &peerListener{UnixListener: ln, log: log}, nil
}

// peerListener drops connections from other users where the kernel tells the peer's uid
// (Linux SO_PEERCRED); elsewhere the file mode alone protects the socket.
type peerListener struct {
	*net.UnixListener
	log *slog.Logger
}

// Accept returns the next connection from this process's user or root.
func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.UnixListener.Accept()
		if err != nil {
			return nil, err
		}
		uid, known := peerUID(c)
		if !known || uid == os.Getuid() || uid == 0 {
			return c, nil
		}
		l.log.Warn("token socket: connection from another user refused", "uid", uid)
		c.Close()
	}
}

type ctxKey int

const peerKey ctxKey = 0

func socketConnContext(ctx context.Context, c net.Conn) context.Context {
	who := "socket"
	if uid, ok := peerUID(c); ok {
		who = "socket uid " + strconv.Itoa(uid)
	}
	return context.WithValue(ctx, peerKey, who)
}

// socketHandler serves token management on the unix socket.
func (s *Server) socketHandler() http.Handler {
	mux := http.NewServeMux()
	who := func(r *http.Request) string {
		if w, ok := r.Context().Value(peerKey).(string); ok {
			return w
		}
		return "socket"
	}
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	handle("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) error {
		var in TokenInput
		if err := decodeBody(w, r, &in); err != nil {
			return err
		}
		t, err := s.mintToken(r.Context(), who(r), in)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, t)
		return nil
	})
	handle("GET /v1/tokens", func(w http.ResponseWriter, r *http.Request) error {
		writeJSON(w, http.StatusOK, listOf(s.tokenViews()))
		return nil
	})
	handle("DELETE /v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) error {
		if err := s.revokeToken(r.Context(), who(r), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	handle("/", func(w http.ResponseWriter, r *http.Request) error {
		return notFound("the token socket serves /v1/tokens only")
	})
	return mux
}

package admin

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Defaults of Config.
const (
	DefaultListen           = "127.0.0.1:8443"
	DefaultAuthFailureBurst = 10
	DefaultAuthFailureEvery = 6 * time.Second
)

// Timeouts of the HTTP server and of the waits a request may cause.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second // the event stream clears it for itself
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 5 * time.Second
	consistentTimeout = 5 * time.Second
	auditTimeout      = 10 * time.Second
	maxBody           = 1 << 20
)

// Server is the admin HTTP server of one node.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	now     func() time.Time
	metrics *Metrics

	routes  []route
	handler http.Handler
	mux     *http.ServeMux

	limiter     *failLimiter
	configToken []byte // SHA-256 of Config.Token, nil when unset
	hostCheck   bool
	listenIP    netip.Addr

	base   context.Context // cancelled by Close: ends event streams
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	ln      net.Listener
	sockLn  net.Listener
	srv     *http.Server
	sockSrv *http.Server
	serving bool
}

// New validates cfg and deps and builds the server; nothing listens until Listen or Serve.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Store == nil {
		return nil, fmt.Errorf("%w: Deps.Store is required", ErrConfig)
	}
	if deps.Domain == "" {
		return nil, fmt.Errorf("%w: Deps.Domain (the digest realm) is required", ErrConfig)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: listen %q: %v", ErrConfig, cfg.Listen, err)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, fmt.Errorf("%w: TLS needs both a certificate and a key", ErrConfig)
	}
	if cfg.AuthFailureBurst <= 0 {
		cfg.AuthFailureBurst = DefaultAuthFailureBurst
	}
	if cfg.AuthFailureEvery <= 0 {
		cfg.AuthFailureEvery = DefaultAuthFailureEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics()
	}
	if deps.Raft == nil && deps.Cluster != nil {
		if rs, ok := deps.Cluster.(raftStats); ok {
			deps.Raft = rs.Stats
		}
	}
	s := &Server{
		cfg: cfg, deps: deps, now: cfg.Now, metrics: deps.Metrics,
		log:     cfg.Logger.With("component", "admin"),
		limiter: newFailLimiter(cfg.AuthFailureBurst, cfg.AuthFailureEvery),
	}
	if cfg.Token != "" {
		h := sha256.Sum256([]byte(cfg.Token))
		s.configToken = h[:]
	}
	loopback := host == "localhost"
	if a, err := netip.ParseAddr(host); err == nil {
		s.listenIP = a.Unmap()
		loopback = s.listenIP.IsLoopback()
	}
	s.hostCheck = loopback || len(cfg.AllowedHosts) > 0
	if err := s.metrics.attach(s); err != nil {
		return nil, err
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	s.routes = s.apiRoutes()
	s.mux = http.NewServeMux()
	for i := range s.routes {
		rt := &s.routes[i]
		s.mux.Handle(rt.method+" "+rt.pattern, s.wrap(rt))
	}
	s.mux.HandleFunc("/api/", s.apiFallback)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /metrics", s.serveMetrics)
	s.mux.Handle("GET /dashboard/", dashboardHandler())
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard/", http.StatusFound)
	})
	s.mux.HandleFunc("/", s.fallback)
	s.handler = s.guardHost(s.mux)
	return s, nil
}

// Handler returns the HTTP handler of the API, metrics, health and dashboard (for tests and for
// embedding in another server).
func (s *Server) Handler() http.Handler { return s.handler }

// Metrics returns the metrics the node feeds.
func (s *Server) Metrics() *Metrics { return s.metrics }

// guardHost applies the DNS rebinding check and the security headers to everything.
func (s *Server) guardHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if ae := s.checkHost(r); ae != nil {
			s.log.Warn("admin request refused: host", "remote", remoteAddr(r), "host", trimForLog(r.Host),
				"origin", trimForLog(r.Header.Get("Origin")))
			s.writeError(w, r, ae)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Listen binds the API listener and the token socket, so a node can fail at start on a busy
// port. Serve calls it when it was not called.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("%w: admin tls: %v", ErrConfig, err)
		}
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	} else if s.cfg.TLSConfig != nil {
		ln = tls.NewListener(ln, s.cfg.TLSConfig)
	}
	if s.cfg.Socket != "" {
		sl, err := listenSocket(s.cfg.Socket, s.log)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin: token socket %s: %w", s.cfg.Socket, err)
		}
		s.sockLn = sl
	}
	s.ln = ln
	return nil
}

// Addr returns the API's bound address (nil before Listen).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL returns the API's base URL (empty before Listen).
func (s *Server) URL() string {
	a := s.Addr()
	if a == nil {
		return ""
	}
	scheme := "http"
	if s.cfg.TLSCert != "" || s.cfg.TLSConfig != nil {
		scheme = "https"
	}
	return scheme + "://" + a.String()
}

// Serve listens (unless Listen did) and serves the API and the token socket until ctx is done
// or Close is called; then it shuts down gracefully. It returns nil after a shutdown.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	s.mu.Lock()
	if s.serving || s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.serving = true
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, ErrorLog: errLog,
		BaseContext: func(net.Listener) context.Context { return s.base }}
	srv, ln, sockLn := s.srv, s.ln, s.sockLn
	if sockLn != nil {
		s.sockSrv = &http.Server{Handler: s.socketHandler(), ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout: readTimeout, WriteTimeout: writeTimeout, ErrorLog: errLog, ConnContext: socketConnContext,
			BaseContext: func(net.Listener) context.Context { return s.base }}
	}
	sockSrv := s.sockSrv
	s.mu.Unlock()

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if sockSrv != nil {
		go func() { errc <- sockSrv.Serve(sockLn) }()
	}
	s.log.Info("admin API listening", "url", s.URL(), "token_socket", s.cfg.Socket)
	var err error
	select {
	case <-ctx.Done():
	case <-s.base.Done():
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// Close stops the servers: event streams end at once, other requests get shutdownTimeout to
// finish. The token socket file is removed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv, sockSrv, ln, sockLn := s.srv, s.sockSrv, s.ln, s.sockLn
	s.mu.Unlock()
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for _, hs := range []*http.Server{srv, sockSrv} {
		if hs != nil {
			if err := hs.Shutdown(ctx); err != nil {
				errs = append(errs, err)
				_ = hs.Close()
			}
		}
	}
	if srv == nil && ln != nil {
		_ = ln.Close()
	}
	if sockSrv == nil && sockLn != nil {
		_ = sockLn.Close()
	}
	if sockLn != nil {
		if err := os.Remove(s.cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// apiFallback answers /api/… paths no route matched: 405 with Allow when the path exists with
// other methods, else 404.
func (s *Server) apiFallback(w http.ResponseWriter, r *http.Request) {
	if allow := s.allowed(r, false); len(allow) > 0 {
		s.methodNotAllowed(w, r, allow)
		return
	}
	s.writeError(w, r, notFound("no such API path %q", r.URL.Path))
}

// fallback answers the paths outside /api/ that no route matched (health, readiness, metrics,
// dashboard): 405 with Allow (GET, HEAD) for a wrong method on a path that exists, else 404.
func (s *Server) fallback(w http.ResponseWriter, r *http.Request) {
	if allow := s.allowed(r, true); len(allow) > 0 {
		s.methodNotAllowed(w, r, allow)
		return
	}
	s.writeError(w, r, notFound("no such path %q", r.URL.Path))
}

// allowed lists the methods a route serves on r's path (other than r's own); withHead adds HEAD
// after GET (net/http serves HEAD for every GET route).
func (s *Server) allowed(r *http.Request, withHead bool) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pat := s.mux.Handler(probe); pat != "" && !strings.HasPrefix(pat, "/") {
			allow = append(allow, m)
			if m == http.MethodGet && withHead && r.Method != http.MethodHead {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	return allow
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow []string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	s.writeError(w, r, apiErr(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
		"%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
}

// healthz: the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz: the node serves and, in a cluster, is a member that knows a leader. It says only
// that much without a token; /api/v1/health has the details.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	h := s.health(r.Context())
	if h.Status != "ok" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": h.Status})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": h.Status})
}

// settle waits until this node applied everything acknowledged so far, so that the response
// to a write (and the client's next read here) reflects it. Failure only costs freshness.
func (s *Server) settle(ctx context.Context) {
	if s.deps.Cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, consistentTimeout)
	defer cancel()
	if err := s.deps.Cluster.Consistent(ctx); err != nil {
		s.log.Debug("read-your-write wait failed", "error", err)
	}
}

// propose applies cmds in order, then records the audit entry and waits for the writes to be
// visible locally.
func (s *Server) propose(ctx context.Context, who Principal, action, target string, cmds ...state.Command) error {
	for _, c := range cmds {
		if err := s.deps.Store.Propose(ctx, c); err != nil {
			return err
		}
	}
	s.audit(ctx, who.String(), action, target)
	s.settle(ctx)
	return nil
}

// audit appends an audit entry; failures are logged (the write itself already happened).
func (s *Server) audit(ctx context.Context, who, action, target string) {
	e := state.AuditEntry{Time: s.now().UTC(), Who: who, Action: action, Target: target, Node: s.cfg.NodeID}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := s.deps.Store.Propose(ctx, state.Audit(e)); err != nil {
		s.log.Warn("audit entry not recorded", "who", who, "action", action, "target", target, "error", err)
	}
	s.log.Info("admin write", "who", who, "action", action, "target", target)
}

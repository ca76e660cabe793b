package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/turn"
	"github.com/portcullis-sbc/portcullis/sbc/edge"
)

func TestClusterSingleNode(t *testing.T) {
	e := newEnv(t)
	var l list[cluster.Member]
	e.do("GET", "/api/v1/cluster/members", e.read, nil).json(t, &l)
	if len(l.Items) != 1 || l.Items[0].ID != "edge1" || l.Items[0].State != cluster.StateLeader {
		t.Fatalf("members %+v", l)
	}
	var ld LeaderView
	e.do("GET", "/api/v1/cluster/leader", e.read, nil).json(t, &ld)
	if ld.ID != "edge1" {
		t.Fatalf("leader %+v", ld)
	}
	wantErr(t, e.do("POST", "/api/v1/cluster/members", e.admin, JoinInput{ID: "edge2", Address: "10.0.0.2:7000"}),
		http.StatusConflict, CodeSingleNode, "")
	wantErr(t, e.do("DELETE", "/api/v1/cluster/members/edge2", e.admin, nil), http.StatusConflict, CodeSingleNode, "")
}

func TestClusterMembership(t *testing.T) {
	fc := &fakeCluster{leader: "edge1", healthy: true, members: []cluster.Member{
		{ID: "edge1", Address: "10.0.0.1:7000", State: cluster.StateLeader, Healthy: true},
		{ID: "edge2", Address: "10.0.0.2:7000", State: cluster.StateFollower, Healthy: true},
	}}
	e := newEnv(t, withCluster(fc))
	var l list[cluster.Member]
	e.do("GET", "/api/v1/cluster/members", e.read, nil).json(t, &l)
	if len(l.Items) != 2 {
		t.Fatalf("members %+v", l)
	}
	var ld LeaderView
	e.do("GET", "/api/v1/cluster/leader", e.read, nil).json(t, &ld)
	if ld.ID != "edge1" || ld.Address != "edge1.example:7000" {
		t.Fatalf("leader %+v", ld)
	}
	wantStatus(t, e.do("POST", "/api/v1/cluster/members", e.admin, JoinInput{ID: "edge3", Address: "10.0.0.3:7000"}), http.StatusCreated)
	wantStatus(t, e.do("DELETE", "/api/v1/cluster/members/edge2", e.admin, nil), http.StatusNoContent)
	if len(fc.joined) != 1 || fc.joined[0] != "edge3@10.0.0.3:7000" || len(fc.removed) != 1 || fc.removed[0] != "edge2" {
		t.Fatalf("joined %v removed %v", fc.joined, fc.removed)
	}
	for _, tc := range []struct {
		in    any
		field string
	}{
		{JoinInput{ID: "", Address: "10.0.0.3:7000"}, "id"},
		{JoinInput{ID: "bad id", Address: "10.0.0.3:7000"}, "id"},
		{JoinInput{ID: "edge3", Address: "10.0.0.3"}, "address"},
		{JoinInput{ID: "edge3", Address: "10.0.0.3:0"}, "address"},
	} {
		wantErr(t, e.do("POST", "/api/v1/cluster/members", e.admin, tc.in), http.StatusBadRequest, CodeInvalid, tc.field)
	}
	wantErr(t, e.do("DELETE", "/api/v1/cluster/members/bad%20id", e.admin, nil), http.StatusBadRequest, CodeInvalid, "id")

	// Cluster errors keep their meaning.
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", cluster.ErrNoLeader), 503, CodeNoLeader},
		{cluster.ErrOutcomeUnknown, 503, CodeOutcomeUnknown},
		{cluster.ErrUnknownMember, 404, CodeNotFound},
		{cluster.ErrClosed, 503, CodeUnavailable},
		{context.DeadlineExceeded, 504, CodeTimeout},
	} {
		fc.mu.Lock()
		fc.err = tc.err
		fc.mu.Unlock()
		wantErr(t, e.do("DELETE", "/api/v1/cluster/members/edge3", e.admin, nil), tc.status, tc.code, "")
	}
	// A consistent read that cannot be proven fails rather than serve stale data.
	wantErr(t, e.do("GET", "/api/v1/rooms?consistent=true", e.read, nil), http.StatusGatewayTimeout, CodeTimeout, "")
	fc.mu.Lock()
	fc.err, fc.leader, fc.healthy = nil, "", false
	fc.mu.Unlock()
	wantErr(t, e.do("GET", "/api/v1/cluster/leader", e.read, nil), http.StatusServiceUnavailable, CodeNoLeader, "")
	before := fc.consisted
	wantStatus(t, e.do("GET", "/api/v1/rooms?consistent=true", e.read, nil), http.StatusOK)
	wantStatus(t, e.do("POST", "/api/v1/guard/bans", e.admin, BanInput{Prefix: "192.0.2.1"}), http.StatusCreated)
	if fc.consisted != before+2 {
		t.Fatalf("Consistent called %d times, want 2 (consistent read, read-your-write)", fc.consisted-before)
	}
}

func TestHealth(t *testing.T) {
	fc := &fakeCluster{leader: "edge1", healthy: true}
	var nodeErr error
	e := newEnv(t, withCluster(fc), func(_ *Config, d *Deps) { d.Health = func() error { return nodeErr } })
	wantStatus(t, e.do("GET", "/healthz", "", nil), http.StatusOK)
	wantStatus(t, e.do("GET", "/readyz", "", nil), http.StatusOK)
	var h Health
	e.do("GET", "/api/v1/health", e.read, nil).json(t, &h)
	if h.Status != "ok" || h.Leader != "edge1" || h.Checks["cluster"] != "ok" || h.Node != "edge1" {
		t.Fatalf("health %+v", h)
	}
	fc.mu.Lock()
	fc.healthy = false
	fc.mu.Unlock()
	r := e.do("GET", "/readyz", "", nil)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if string(r.body) != `{"status":"unavailable"}`+"\n" {
		t.Fatalf("readyz says more than its status without a token: %s", r.body)
	}
	r = e.do("GET", "/api/v1/health", e.read, nil)
	wantStatus(t, r, http.StatusServiceUnavailable)
	r.json(t, &h)
	if h.Status != "unavailable" || h.Checks["cluster"] == "ok" {
		t.Fatalf("health %+v", h)
	}
	fc.mu.Lock()
	fc.healthy = true
	fc.mu.Unlock()
	nodeErr = errors.New("draining")
	e.do("GET", "/api/v1/health", e.read, nil).json(t, &h)
	if h.Status != "unavailable" || h.Checks["node"] != "draining" {
		t.Fatalf("health %+v", h)
	}
	wantStatus(t, e.do("GET", "/healthz", "", nil), http.StatusOK)
}

func TestTokensAPI(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/tokens", e.admin, TokenInput{Scope: state.ScopeAdmin, Name: "ops team"})
	wantStatus(t, r, http.StatusCreated)
	var tc TokenCreated
	r.json(t, &tc)
	if !strings.HasPrefix(tc.Secret, TokenPrefix) || tc.Scope != state.ScopeAdmin || tc.Name != "ops team" {
		t.Fatalf("created %+v", tc)
	}
	for _, tk := range e.store.State().Tokens() {
		if tk.ID == tc.ID && tk.Hash != HashSecret(tc.Secret) {
			t.Fatal("stored hash is not SHA-256 of the secret")
		}
	}
	wantStatus(t, e.do("POST", "/api/v1/guard/bans", tc.Secret, BanInput{Prefix: "192.0.2.1"}), http.StatusCreated)
	r = e.do("GET", "/api/v1/tokens", e.admin, nil)
	if strings.Contains(string(r.body), "hash") || strings.Contains(string(r.body), tc.Secret) {
		t.Fatalf("token list leaks: %s", r.body)
	}
	var l list[TokenView]
	r.json(t, &l)
	if len(l.Items) != 3 {
		t.Fatalf("tokens %+v", l)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"scope":"root","name":"x"}`, "scope"},
		{`{"scope":"read"}`, "name"},
		{`{"scope":"read","name":"bad\tname"}`, "name"},
		{`{"scope":"read","name":"x","secret":"mine"}`, "secret"},
	} {
		wantErr(t, e.do("POST", "/api/v1/tokens", e.admin, tc.body), http.StatusBadRequest, CodeInvalid, tc.field)
	}
	wantErr(t, e.do("DELETE", "/api/v1/tokens/tk_nope", e.admin, nil), http.StatusNotFound, CodeNotFound, "")
	wantStatus(t, e.do("DELETE", "/api/v1/tokens/"+tc.ID, e.admin, nil), http.StatusNoContent)
}

func TestAuditPaging(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		wantStatus(t, e.do("POST", "/api/v1/guard/bans", e.admin, BanInput{Prefix: fmt.Sprintf("192.0.2.%d", i+1)}), http.StatusCreated)
	}
	var p list[state.AuditEntry]
	e.do("GET", "/api/v1/audit?limit=2", e.read, nil).json(t, &p)
	var got []string
	for {
		for _, a := range p.Items {
			got = append(got, a.Target)
		}
		if p.NextCursor == "" {
			break
		}
		next := p.NextCursor
		p = list[state.AuditEntry]{}
		e.do("GET", "/api/v1/audit?limit=2&cursor="+next, e.read, nil).json(t, &p)
	}
	if strings.Join(got, " ") != "192.0.2.1/32 192.0.2.2/32 192.0.2.3/32 192.0.2.4/32 192.0.2.5/32" {
		t.Fatalf("audit targets %v", got)
	}
	wantErr(t, e.do("GET", "/api/v1/audit?cursor=x", e.read, nil), http.StatusBadRequest, CodeInvalid, "cursor")
}

func TestUnknownPathsAndMethods(t *testing.T) {
	e := newEnv(t)
	r := e.do("PUT", "/api/v1/rooms", e.admin, `{}`)
	wantErr(t, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "")
	if r.header.Get("Allow") != "GET, POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	r = e.do("POST", "/api/v1/rooms/x", e.admin, `{}`)
	wantErr(t, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "")
	if r.header.Get("Allow") != "GET, PATCH, DELETE" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	wantErr(t, e.do("GET", "/api/v1/nothing", e.read, nil), http.StatusNotFound, CodeNotFound, "")
	wantErr(t, e.do("GET", "/api/v2/rooms", e.read, nil), http.StatusNotFound, CodeNotFound, "")
	wantErr(t, e.do("GET", "/favicon.ico", "", nil), http.StatusNotFound, CodeNotFound, "")
	req, _ := http.NewRequest("GET", e.http.URL+"/", nil)
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/dashboard/" {
		t.Fatalf("/ answers %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, func(_ *Config, d *Deps) {
		d.Raft = func() cluster.Stats { return cluster.Stats{State: cluster.StateLeader, Term: 3} }
		d.Media = func() media.Stats { return media.Stats{FastPath: "kernel"} }
	})
	e.propose(state.PutBinding(state.Binding{Room: "a", Contact: "sip:a@x", Node: "edge1", Expires: e.now.Add(time.Hour)}))
	e.propose(state.PutCall(state.Call{ID: "c1", Node: "edge1", State: state.CallAnswered}))
	e.events.push(fakeEvent("scanner-user-agent"))
	m := e.srv.Metrics()
	m.CallAttempt("inbound")
	m.CallOutcome("inbound", "answered")
	m.RegisterResult("ok")
	m.CallAdopted("resumed")
	m.CallAdopted("resumed")
	m.CallsHandedOver(3)
	m.CallsHandedOver(0)
	st := m.InstrumentStore(e.store)
	if err := st.Propose(context.Background(), state.PutBan(state.Ban{Prefix: mustPrefix("192.0.2.0/24"), Until: e.now.Add(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.do("GET", "/api/v1/rooms", e.read, nil), http.StatusOK)

	r := e.do("GET", "/metrics", "", nil) // loopback peer: no token needed
	wantStatus(t, r, http.StatusOK)
	body := string(r.body)
	for _, want := range []string{
		`portcullis_registrations{node="edge1"} 1`,
		`portcullis_calls_active{state="answered"} 1`, // c1: the API lists it with this node as owner
		`portcullis_calls_active{state="ringing"} 0`,
		`portcullis_call_attempts_total{direction="inbound"} 1`,
		`portcullis_call_outcomes_total{direction="inbound",outcome="answered"} 1`,
		`portcullis_register_results_total{result="ok"} 1`,
		`portcullis_calls_adopted_total{result="resumed"} 2`,
		`portcullis_calls_adopted_total{result="ended"} 0`,
		`portcullis_calls_handed_over_total 3`,
		`portcullis_guard_refusals_total{rule="scanner-user-agent"} 1`,
		`portcullis_guard_refusals_total{rule="flood"} 0`,
		`portcullis_bans 1`,
		`portcullis_rooms 0`,
		`portcullis_store_propose_seconds_count{command="put-ban"} 1`,
		`portcullis_raft_state{state="leader"} 1`,
		`portcullis_raft_term 3`,
		`portcullis_media_fastpath{mode="kernel"} 1`,
		`portcullis_media_fastpath{mode="userspace"} 0`,
		`portcullis_admin_requests_total{code="200",route="GET /api/v1/rooms"} 1`,
		`go_goroutines`,
		`go_sched_latencies_seconds_bucket{le=`,
		`process_open_fds`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}

	// From another host /metrics needs a token.
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {"pct_bad", 401}, {e.read, 200}} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = "192.0.2.50:40000"
		req.Host = "127.0.0.1:8443"
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Fatalf("remote scrape with %q: %d, want %d", tc.token, rec.Code, tc.want)
		}
	}
	// A Metrics serves one server.
	if _, err := New(Config{}, Deps{Store: e.store, Domain: testDomain, Metrics: m}); !errors.Is(err, ErrConfig) {
		t.Fatalf("second attach: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{"no store", Config{}, Deps{Domain: testDomain}},
		{"no domain", Config{}, Deps{Store: state.NewLocal()}},
		{"bad listen", Config{Listen: "8443"}, Deps{Store: state.NewLocal(), Domain: testDomain}},
		{"half tls", Config{TLSCert: "c.pem"}, Deps{Store: state.NewLocal(), Domain: testDomain}},
	} {
		if _, err := New(tc.cfg, tc.deps); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestServeTLSAndSocket(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	sock := filepath.Join(dir, SocketName)
	store := state.NewLocal()
	srv, err := New(Config{Listen: "127.0.0.1:0", TLSCert: cert, TLSKey: key, Socket: sock, NodeID: "edge1"},
		Deps{Store: store, Domain: testDomain})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- srv.Serve(ctx) }()

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Fatalf("data dir holds %d entries (temporary socket dir left?)", len(entries))
	}
	// Mint the first token through the socket.
	uc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	res, err := uc.Post("http://portcullis/v1/tokens", "application/json", strings.NewReader(`{"scope":"admin","name":"ops"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || !strings.Contains(string(b), `"secret":"pct_`) {
		t.Fatalf("socket token: %d %s", res.StatusCode, b)
	}
	secret := strings.Split(strings.Split(string(b), `"secret":"`)[1], `"`)[0]
	if a := store.State().AuditLog(0, 0); len(a) != 1 || !strings.HasPrefix(a[0].Who, "socket uid ") || a[0].Action != "token.create" {
		t.Fatalf("audit %+v", a)
	}
	res, err = uc.Post("http://portcullis/v1/tokens", "application/json", strings.NewReader(`{"scope":"god","name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad scope over the socket: %d", res.StatusCode)
	}

	// The API speaks TLS only, and the token works there.
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(caPEM)
	tc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if !strings.HasPrefix(srv.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", srv.URL())
	}
	req, _ := http.NewRequest("GET", srv.URL()+"/api/v1/tokens", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err = tc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("TLS API: %d", res.StatusCode)
	}
	if res, err := http.Get("http://" + srv.Addr().String() + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}

	// A second server on the same data dir refuses to steal the socket.
	srv2, _ := New(Config{Listen: "127.0.0.1:0", Socket: sock}, Deps{Store: store, Domain: testDomain})
	if err := srv2.Listen(); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second listener on the socket: %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	if err := srv.Serve(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, SocketName)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // a crashed node leaves the file behind
	srv, _ := New(Config{Listen: "127.0.0.1:0", Socket: sock}, Deps{Store: state.NewLocal(), Domain: testDomain})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := os.WriteFile(sock, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, _ = New(Config{Listen: "127.0.0.1:0", Socket: sock}, Deps{Store: state.NewLocal(), Domain: testDomain})
	if err := srv.Listen(); err == nil {
		t.Fatal("a regular file at the socket path was replaced")
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestGrafanaDashboardMetrics checks that every portcullis_* series the Grafana dashboard in
// deploy/ queries is one /metrics serves.
func TestGrafanaDashboardMetrics(t *testing.T) {
	dash, err := os.ReadFile("../../deploy/grafana/portcullis.json")
	if err != nil {
		t.Fatal(err)
	}
	sip, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sip.Close()
	var edgeStats edge.Stats
	edge.NewPacketConn(sip, nil, edge.Limits{MaxMessageSize: 65535}, &edgeStats)
	e := newEnv(t, func(_ *Config, d *Deps) {
		d.Raft = func() cluster.Stats { return cluster.Stats{State: cluster.StateFollower} }
		d.Media = func() media.Stats { return media.Stats{Packets: 10} }
		d.TURN = func() turn.Stats { return turn.Stats{Live: 1} }
		d.Collectors = append(d.Collectors, edgeStats.Collector())
	})
	e.propose(state.PutBinding(state.Binding{Room: "a", Contact: "sip:a@x", Node: "edge1", Expires: e.now.Add(time.Hour)}))
	m := e.srv.Metrics()
	m.CallAttempt("inbound")
	m.CallOutcome("inbound", "answered")
	m.RegisterResult("ok")
	_ = m.InstrumentStore(e.store).Propose(context.Background(), state.SetLists(state.Lists{}))
	e.events.push(fakeEvent("flood"))
	e.do("GET", "/api/v1/rooms", "", nil) // one auth failure and one request
	body := string(e.do("GET", "/metrics", "", nil).body)
	served := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			name, _, _ = strings.Cut(name, "{")
			served[name] = true
		}
	}
	used := regexp.MustCompile(`portcullis_[a-z_]+`).FindAllString(string(dash), -1)
	if len(used) < 20 {
		t.Fatalf("the dashboard uses only %d series", len(used))
	}
	for _, name := range used {
		if !served[name] {
			t.Errorf("dashboard queries %s, which /metrics does not serve", name)
		}
	}
	for _, p := range []string{"go_goroutines", "go_sched_latencies_seconds_bucket", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !served[p] {
			t.Errorf("runtime series %s missing", p)
		}
	}
}

// TestWrongMethodOutsideAPI: the paths outside /api/ (health, readiness, metrics, dashboard)
// answer a wrong method with 405 and Allow, like the API does, not 404.
func TestWrongMethodOutsideAPI(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/dashboard/", "/dashboard/app.js"} {
		for _, method := range []string{"POST", "PUT", "DELETE"} {
			r := e.do(method, path, e.admin, `{}`)
			wantErr(t, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "")
			if allow := r.header.Get("Allow"); allow != "GET, HEAD" {
				t.Errorf("%s %s: Allow %q, want GET, HEAD", method, path, allow)
			}
		}
	}
	wantErr(t, e.do("POST", "/nothing-here", e.admin, `{}`), http.StatusNotFound, CodeNotFound, "")
	wantStatus(t, e.do("HEAD", "/healthz", "", nil), http.StatusOK)
}

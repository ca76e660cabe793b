package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// The node's real parts satisfy the seams.
var (
	_ Events  = (*guard.Guard)(nil)
	_ Cluster = (*cluster.Node)(nil)
)

const testDomain = "video.example.com"

// env is one admin server over real HTTP on 127.0.0.1 with a Local store and fakes.
type env struct {
	t      *testing.T
	srv    *Server
	http   *httptest.Server
	store  *state.Local
	calls  *fakeCalls
	events *fakeEvents
	admin  string // admin token secret
	read   string // read token secret
	now    time.Time
}

type option func(*Config, *Deps)

func withCluster(c Cluster) option      { return func(_ *Config, d *Deps) { d.Cluster = c } }
func withoutCalls() option              { return func(_ *Config, d *Deps) { d.Calls = nil } }
func withoutEvents() option             { return func(_ *Config, d *Deps) { d.Events = nil } }
func withConfig(f func(*Config)) option { return func(c *Config, _ *Deps) { f(c) } }

func newEnv(t *testing.T, opts ...option) *env {
	t.Helper()
	e := &env{t: t, store: state.NewLocal(), calls: &fakeCalls{media: map[string]any{}}, events: newFakeEvents(),
		now: time.Now().UTC()}
	cfg := Config{Listen: "127.0.0.1:0", NodeID: "edge1", AuthFailureBurst: 1000, Now: func() time.Time { return e.now }}
	deps := Deps{Store: e.store, Domain: testDomain, Calls: e.calls, Events: e.events}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		e.http.Close()
		srv.Close()
	})
	e.admin = e.token(state.ScopeAdmin, "test-admin")
	e.read = e.token(state.ScopeRead, "test-read")
	return e
}

// token stores a token directly and returns its secret.
func (e *env) token(scope state.Scope, name string) string {
	e.t.Helper()
	secret, hash := NewSecret()
	if err := e.store.Propose(context.Background(), state.PutToken(state.Token{ID: newTokenID(), Hash: hash,
		Scope: scope, Name: name, Created: e.now})); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

func (e *env) propose(c state.Command) {
	e.t.Helper()
	if err := e.store.Propose(context.Background(), c); err != nil {
		e.t.Fatal(err)
	}
}

// resp is a response with its body.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("status %d: body %q: %v", r.status, r.body, err)
	}
}

// do sends a request with token (may be "") and a body (string sent as is, other values as
// JSON, nil none).
func (e *env) do(method, path, token string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// wantErr checks the one error shape, the status, the code and (when not "") the field.
func wantErr(t *testing.T, r resp, status int, code, field string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var ae struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Field   string `json:"field"`
	}
	r.json(t, &ae)
	if ae.Error != code || ae.Message == "" {
		t.Fatalf("error %q message %q, want code %q and a message; body %s", ae.Error, ae.Message, code, r.body)
	}
	if field != "" && ae.Field != field {
		t.Fatalf("field %q, want %q; body %s", ae.Field, field, r.body)
	}
}

func wantStatus(t *testing.T, r resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
}

// fakeCalls records hang-ups.
type fakeCalls struct {
	mu    sync.Mutex
	hung  []string
	local []state.Call
	media map[string]any
	err   error
}

func (f *fakeCalls) Hangup(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.hung = append(f.hung, id)
	return nil
}

func (f *fakeCalls) MediaStats(id string) (any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.media[id]
	return m, ok
}

func (f *fakeCalls) Calls() []state.Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.local)
}

func (f *fakeCalls) hungUp() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.hung)
}

// fakeEvents is a guard event log.
type fakeEvents struct {
	mu     sync.Mutex
	events []guard.Event // oldest first
	subs   map[chan guard.Event]struct{}
}

func newFakeEvents() *fakeEvents { return &fakeEvents{subs: map[chan guard.Event]struct{}{}} }

func (f *fakeEvents) push(e guard.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
	for ch := range f.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

func (f *fakeEvents) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeEvents) Recent(flt guard.EventFilter, limit int) []guard.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []guard.Event
	for i := len(f.events) - 1; i >= 0; i-- {
		if matchEvent(&flt, &f.events[i]) {
			out = append(out, f.events[i])
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out
}

func (f *fakeEvents) Subscribe(ctx context.Context) <-chan guard.Event {
	ch := make(chan guard.Event, 64)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
		close(ch)
	}()
	return ch
}

func (f *fakeEvents) Counts() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]uint64{}
	for _, r := range guard.Rules() {
		out[r] = 0
	}
	for _, e := range f.events {
		out[e.Rule]++
	}
	return out
}

// fakeCluster is a cluster whose answers the test sets.
type fakeCluster struct {
	mu        sync.Mutex
	members   []cluster.Member
	leader    string
	healthy   bool
	err       error // returned by Join, Remove and Consistent
	joined    []string
	removed   []string
	consisted int
}

func (f *fakeCluster) Members() []cluster.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members)
}

func (f *fakeCluster) Leader() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leader == "" {
		return "", ""
	}
	return f.leader, f.leader + ".example:7000"
}

func (f *fakeCluster) Join(ctx context.Context, id, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.joined = append(f.joined, id+"@"+addr)
	return nil
}

func (f *fakeCluster) Remove(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.removed = append(f.removed, id)
	return nil
}

func (f *fakeCluster) Consistent(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.consisted++
	return f.err
}

func (f *fakeCluster) Healthy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthy
}

func fakeEvent(rule string) guard.Event {
	return guard.Event{Time: time.Now(), Source: "203.0.113.5:5060", Transport: "UDP", Rule: rule, Action: guard.Drop,
		Reason: "test refusal"}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
)

// api starts the real admin API over HTTP on 127.0.0.1 and returns its URL and an admin token.
func api(t *testing.T) (string, string) {
	t.Helper()
	store := state.NewLocal()
	srv, err := admin.New(admin.Config{Listen: "127.0.0.1:0", NodeID: "n1", AuthFailureBurst: 1000},
		admin.Deps{Store: store, Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	secret, hash := admin.NewSecret()
	if err := store.Propose(context.Background(), state.PutToken(state.Token{ID: "tok1", Hash: hash,
		Scope: state.ScopeAdmin, Name: "test", Created: time.Now().UTC()})); err != nil {
		t.Fatal(err)
	}
	return hs.URL, secret
}

func TestClientAgainstTheAPI(t *testing.T) {
	url, token := api(t)
	c, err := New(Config{API: url, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var rc admin.RoomCreated
	if _, err := c.Send(ctx, http.MethodPost, "/rooms", admin.RoomInput{Name: ptr("boardroom"), Generate: true}, &rc); err != nil {
		t.Fatal(err)
	}
	var l struct{ Items []admin.RoomView }
	if _, err := c.Get(ctx, "/rooms", &l); err != nil || len(l.Items) != 1 || l.Items[0].Name != "boardroom" {
		t.Fatalf("rooms %+v, %v", l, err)
	}
	for _, tt := range []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
	}{
		{"not found", http.MethodGet, "/rooms/nope", nil, 404, admin.CodeNotFound, ""},
		{"invalid", http.MethodPost, "/rooms", admin.RoomInput{Name: ptr("bad name!"), Generate: true}, 400, admin.CodeInvalid, "name"},
		{"no such call", http.MethodDelete, "/calls/nope", nil, 0, "", ""}, // no call control on this node
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Send(ctx, tt.method, tt.path, tt.body, nil)
			var e *Error
			var ae *admin.APIError
			if !errors.As(err, &e) || !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an API error", err, err)
			}
			if tt.status != 0 && (ae.Status != tt.status || ae.Code != tt.code || ae.Field != tt.field) {
				t.Fatalf("got %d %s field %q, want %d %s field %q", ae.Status, ae.Code, ae.Field, tt.status, tt.code, tt.field)
			}
		})
	}
	bad, _ := New(Config{API: url, Token: "wrong"})
	var e *Error
	if _, err := bad.Get(ctx, "/rooms", nil); !errors.As(err, &e) || e.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	if _, err := New(Config{API: "ftp://x"}); !errors.Is(err, ErrBadURL) {
		t.Fatalf("ftp URL: %v", err)
	}
	// a port nobody listens on: no answer at all
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c, err := New(Config{API: addr, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var ce *ConnError
	if _, err := c.Get(context.Background(), "/rooms", nil); !errors.As(err, &ce) {
		t.Fatalf("closed port: %v (%T)", err, err)
	}
	// a proxy's error page instead of the API's JSON: the status text and the body
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	defer hs.Close()
	c, _ = New(Config{API: hs.URL})
	var e *Error
	if _, err := c.Get(context.Background(), "/rooms", nil); !errors.As(err, &e) || e.Status != 502 ||
		e.Code != "Bad Gateway" || e.Message != "upstream down" || e.Error() != "502 Bad Gateway: upstream down" {
		t.Fatalf("proxy page: %v", err)
	}
	if _, err := c.Stream(context.Background(), "/events/stream"); !errors.As(err, &e) || e.Status != 502 {
		t.Fatalf("stream: %v", err)
	}
}

func ptr(s string) *string { return &s }

package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

func TestCreateRoomValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		body   any
		ctype  string
		status int
		code   string
		field  string
	}{
		{"no name", `{"password":"longenough"}`, "", 400, CodeInvalid, "name"},
		{"bad name", `{"name":"bad name","password":"longenough"}`, "", 400, CodeInvalid, "name"},
		{"name too long", `{"name":"` + strings.Repeat("a", 65) + `","password":"longenough"}`, "", 400, CodeInvalid, "name"},
		{"no credentials", `{"name":"r1"}`, "", 400, CodeInvalid, "password"},
		{"two credentials", `{"name":"r1","password":"longenough","generate":true}`, "", 400, CodeInvalid, "password"},
		{"short password", `{"name":"r1","password":"short"}`, "", 400, CodeInvalid, "password"},
		{"control in password", `{"name":"r1","password":"long\u0000enough"}`, "", 400, CodeInvalid, "password"},
		{"bad ha1", `{"name":"r1","ha1_md5":"XYZ"}`, "", 400, CodeInvalid, "ha1_md5"},
		{"bad ha1 sha256", `{"name":"r1","ha1_sha256":"abcd"}`, "", 400, CodeInvalid, "ha1_sha256"},
		{"bad inbound", `{"name":"r1","password":"longenough","inbound":"sometimes"}`, "", 400, CodeInvalid, "inbound"},
		{"allowlist without allow", `{"name":"r1","password":"longenough","inbound":"allowlist"}`, "", 400, CodeInvalid, "allow"},
		{"empty allow entry", `{"name":"r1","password":"longenough","allow":["*@a.example",""]}`, "", 400, CodeInvalid, "allow[1]"},
		{"spaced allow entry", `{"name":"r1","password":"longenough","allow":["a b"]}`, "", 400, CodeInvalid, "allow[0]"},
		{"bad dnd code", `{"name":"r1","password":"longenough","dnd_code":200}`, "", 400, CodeInvalid, "dnd_code"},
		{"bad auto answer", `{"name":"r1","password":"longenough","auto_answer":"maybe"}`, "", 400, CodeInvalid, "auto_answer"},
		{"bad drop in", `{"name":"r1","password":"longenough","drop_in":"maybe"}`, "", 400, CodeInvalid, "drop_in"},
		{"unknown member", `{"name":"r1","password":"longenough","colour":"red"}`, "", 400, CodeInvalid, "colour"},
		{"wrong type", `{"name":42,"password":"longenough"}`, "", 400, CodeInvalid, "name"},
		{"wrong type nested", `{"name":"r1","password":"longenough","allow":"x"}`, "", 400, CodeInvalid, "allow"},
		{"malformed json", `{"name":`, "", 400, CodeBadRequest, ""},
		{"empty body", ``, "", 400, CodeBadRequest, ""},
		{"two values", `{"name":"r1","password":"longenough"} {}`, "", 400, CodeBadRequest, ""},
		{"form body", `name=r1`, "application/x-www-form-urlencoded", 415, CodeUnsupportedMedia, ""},
		{"huge body", `{"name":"r1","password":"` + strings.Repeat("x", maxBody) + `"}`, "", 413, CodeTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doType("POST", "/api/v1/rooms", e.admin, tc.body.(string), tc.ctype)
			wantErr(t, r, tc.status, tc.code, tc.field)
		})
	}
	if n := len(e.store.State().Rooms()); n != 0 {
		t.Fatalf("%d rooms created by invalid requests", n)
	}
}

func TestRoomLifecycle(t *testing.T) {
	e := newEnv(t)
	const pw = "correct horse battery"
	r := e.do("POST", "/api/v1/rooms", e.admin, map[string]any{"name": "boardroom", "password": pw,
		"inbound": "allowlist", "allow": []string{"*@partner.example.com", "198.51.100.0/24"}})
	wantStatus(t, r, http.StatusCreated)
	if r.header.Get("Location") != "/api/v1/rooms/boardroom" {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	var created RoomCreated
	r.json(t, &created)
	if created.Password != "" || created.Room.Inbound != state.InboundAllowlist || !created.Room.Credentials.MD5 ||
		!created.Room.Credentials.SHA256 || created.Room.AutoAnswer != "block" || created.Room.DropIn != "deny" ||
		created.Room.DNDCode != 486 {
		t.Fatalf("created %+v", created)
	}
	st, _ := e.store.State().Room("boardroom")
	if st.HA1MD5 != digest.HA1(digest.MD5, "boardroom", testDomain, pw) ||
		st.HA1SHA256 != digest.HA1(digest.SHA256, "boardroom", testDomain, pw) {
		t.Fatal("stored HA1 is not H(name:domain:password)")
	}

	wantErr(t, e.do("POST", "/api/v1/rooms", e.admin, map[string]any{"name": "boardroom", "generate": true}),
		http.StatusConflict, CodeConflict, "")

	e.propose(state.PutBinding(state.Binding{Room: "boardroom", Contact: "sip:br@192.0.2.10:5060", Source: "192.0.2.10:5060",
		Transport: "UDP", Node: "edge1", Expires: e.now.Add(time.Hour)}))
	r = e.do("GET", "/api/v1/rooms/boardroom", e.read, nil)
	wantStatus(t, r, http.StatusOK)
	var got RoomView
	r.json(t, &got)
	if got.Registrations != 1 || len(got.Bindings) != 1 || got.Bindings[0].Source != "192.0.2.10:5060" {
		t.Fatalf("room %+v", got)
	}
	r = e.do("GET", "/api/v1/rooms", e.read, nil)
	var rooms list[RoomView]
	r.json(t, &rooms)
	if len(rooms.Items) != 1 || rooms.Items[0].Registrations != 1 || rooms.Items[0].Bindings != nil {
		t.Fatalf("rooms %+v", rooms)
	}
	wantErr(t, e.do("GET", "/api/v1/rooms/nope", e.read, nil), http.StatusNotFound, CodeNotFound, "")

	// PATCH changes only what it names.
	r = e.do("PATCH", "/api/v1/rooms/boardroom", e.admin, map[string]any{"inbound": "dnd", "dnd_code": 0, "drop_in": "allow"})
	wantStatus(t, r, http.StatusOK)
	st, _ = e.store.State().Room("boardroom")
	if st.Inbound != state.InboundDND || st.DNDCode != 0 || st.DenyDropIn || !st.BlockAutoAnswer || len(st.Allow) != 2 ||
		st.HA1MD5 == "" {
		t.Fatalf("after patch %+v", st)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"name":"other"}`, "name"},
		{`{"password":"new password"}`, "password"},
		{`{"ha1_md5":"00000000000000000000000000000000"}`, "ha1_md5"},
		{`{"generate":true}`, "generate"},
		{`{"inbound":"allowlist","allow":[]}`, "allow"},
	} {
		wantErr(t, e.do("PATCH", "/api/v1/rooms/boardroom", e.admin, tc.body), http.StatusBadRequest, CodeInvalid, tc.field)
	}
	wantErr(t, e.do("PATCH", "/api/v1/rooms/nope", e.admin, `{}`), http.StatusNotFound, CodeNotFound, "")

	// Rotate: generated password shown once, registrations dropped on request.
	r = e.do("POST", "/api/v1/rooms/boardroom/credentials", e.admin, map[string]any{"generate": true, "drop_registrations": true})
	wantStatus(t, r, http.StatusOK)
	var rot RoomCreated
	r.json(t, &rot)
	st, _ = e.store.State().Room("boardroom")
	if len(rot.Password) < 20 || st.HA1SHA256 != digest.HA1(digest.SHA256, "boardroom", testDomain, rot.Password) {
		t.Fatalf("rotation %+v", rot)
	}
	if n := len(e.store.State().Bindings("boardroom", e.now)); n != 0 {
		t.Fatalf("%d bindings left after drop_registrations", n)
	}
	// HA1 only (a hash computed elsewhere): the other hash is cleared, not left stale.
	md5 := digest.HA1(digest.MD5, "boardroom", testDomain, "elsewhere")
	wantStatus(t, e.do("POST", "/api/v1/rooms/boardroom/credentials", e.admin, map[string]any{"ha1_md5": md5}), http.StatusOK)
	st, _ = e.store.State().Room("boardroom")
	if st.HA1MD5 != md5 || st.HA1SHA256 != "" {
		t.Fatalf("after ha1 rotation %+v", st)
	}
	for _, tc := range []struct{ body, field string }{
		{`{}`, "password"},
		{`{"password":"x"}`, "password"},
		{`{"ha1_sha256":"zz"}`, "ha1_sha256"},
		{`{"password":"longenough","ha1_md5":"` + md5 + `"}`, "password"},
		{`{"secret":"x"}`, "secret"},
	} {
		wantErr(t, e.do("POST", "/api/v1/rooms/boardroom/credentials", e.admin, tc.body), http.StatusBadRequest, CodeInvalid, tc.field)
	}
	wantErr(t, e.do("POST", "/api/v1/rooms/nope/credentials", e.admin, `{"generate":true}`), http.StatusNotFound, CodeNotFound, "")

	// Neither passwords nor hashes ever come back.
	for _, path := range []string{"/api/v1/rooms", "/api/v1/rooms/boardroom", "/api/v1/audit"} {
		b := string(e.do("GET", path, e.read, nil).body)
		for _, secret := range []string{pw, rot.Password, md5, "ha1"} {
			if strings.Contains(b, secret) {
				t.Fatalf("%s leaks %q: %s", path, secret, b)
			}
		}
	}

	wantStatus(t, e.do("DELETE", "/api/v1/rooms/boardroom", e.admin, nil), http.StatusNoContent)
	wantErr(t, e.do("DELETE", "/api/v1/rooms/boardroom", e.admin, nil), http.StatusNotFound, CodeNotFound, "")

	var actions []string
	for _, a := range e.store.State().AuditLog(0, 0) {
		if !strings.HasPrefix(a.Who, "token:tk_") || !strings.Contains(a.Who, "(test-admin)") || a.Node != "edge1" ||
			a.Target != "boardroom" || a.Time.IsZero() {
			t.Fatalf("audit entry %+v", a)
		}
		actions = append(actions, a.Action)
	}
	want := "room.create room.update room.credentials room.credentials room.delete"
	if strings.Join(actions, " ") != want {
		t.Fatalf("audit actions %v, want %s", actions, want)
	}
}

func TestRegistrations(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"a", "b"} {
		e.propose(state.PutRoom(state.Room{Name: name, Inbound: state.InboundOpen}))
	}
	e.propose(state.PutBinding(state.Binding{Room: "a", Contact: "sip:a@192.0.2.1", Node: "edge1", Expires: e.now.Add(time.Hour)}))
	e.propose(state.PutBinding(state.Binding{Room: "b", Contact: "sip:b@192.0.2.2", Node: "edge2", Expires: e.now.Add(time.Hour)}))
	e.propose(state.PutBinding(state.Binding{Room: "b", Contact: "sip:old@192.0.2.3", Node: "edge2", Expires: e.now.Add(-time.Second)}))
	var l list[state.Binding]
	e.do("GET", "/api/v1/registrations", e.read, nil).json(t, &l)
	if len(l.Items) != 2 || l.Items[0].Room != "a" || l.Items[1].Contact != "sip:b@192.0.2.2" {
		t.Fatalf("all %+v", l)
	}
	e.do("GET", "/api/v1/registrations?room=b", e.read, nil).json(t, &l)
	if len(l.Items) != 1 || l.Items[0].Room != "b" {
		t.Fatalf("room b %+v", l)
	}
	wantErr(t, e.do("GET", "/api/v1/registrations?room=zzz", e.read, nil), http.StatusNotFound, CodeNotFound, "")
	wantErr(t, e.do("GET", "/api/v1/registrations?rooom=a", e.read, nil), http.StatusBadRequest, CodeInvalid, "rooom")
	r := e.do("GET", "/api/v1/registrations?consistent=true", e.read, nil)
	wantStatus(t, r, http.StatusOK)
	wantErr(t, e.do("GET", "/api/v1/registrations?consistent=maybe", e.read, nil), http.StatusBadRequest, CodeInvalid, "consistent")
	r = e.do("GET", "/api/v1/rooms", e.read, nil)
	if !strings.Contains(string(r.body), `"items":[`) {
		t.Fatalf("list envelope: %s", r.body)
	}
}

// doType sends a raw body with a content type ("" = application/json).
func (e *env) doType(method, path, token, body, ctype string) resp {
	e.t.Helper()
	if ctype == "" {
		return e.do(method, path, token, body)
	}
	req, err := http.NewRequest(method, e.http.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

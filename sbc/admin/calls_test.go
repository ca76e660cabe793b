package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

func TestCalls(t *testing.T) {
	e := newEnv(t)
	t0 := e.now.Add(-time.Minute)
	e.propose(state.PutCall(state.Call{ID: "c1", Room: "a", Node: "edge1", State: state.CallAnswered, Started: t0}))
	e.propose(state.PutCall(state.Call{ID: "c2", Room: "b", Node: "edge2", State: state.CallAnswered, Started: t0.Add(time.Second)}))
	// A ringing call this node bridges is not in the state yet; the answered c1 is fresher here.
	e.calls.local = []state.Call{
		{ID: "c3", Room: "a", Node: "edge1", State: state.CallRinging, Started: t0.Add(2 * time.Second)},
		{ID: "c1", Room: "a", Node: "edge1", State: state.CallAnswered, Started: t0, From: "sip:fresh@x"},
	}
	e.calls.media["c1"] = map[string]any{"streams": 2}

	var l list[state.Call]
	e.do("GET", "/api/v1/calls", e.read, nil).json(t, &l)
	if len(l.Items) != 3 || l.Items[0].ID != "c1" || l.Items[0].From != "sip:fresh@x" || l.Items[2].ID != "c3" {
		t.Fatalf("calls %+v", l.Items)
	}
	e.do("GET", "/api/v1/calls?room=a", e.read, nil).json(t, &l)
	if len(l.Items) != 2 {
		t.Fatalf("room a: %+v", l.Items)
	}

	var d struct {
		state.Call
		Media map[string]any `json:"media"`
	}
	e.do("GET", "/api/v1/calls/c1", e.read, nil).json(t, &d)
	if d.ID != "c1" || d.Media["streams"] != float64(2) {
		t.Fatalf("detail %+v", d)
	}
	e.do("GET", "/api/v1/calls/c3", e.read, nil).json(t, &d)
	if d.ID != "c3" || d.State != state.CallRinging {
		t.Fatalf("ringing detail %+v", d)
	}
	wantErr(t, e.do("GET", "/api/v1/calls/nope", e.read, nil), http.StatusNotFound, CodeNotFound, "")

	wantStatus(t, e.do("DELETE", "/api/v1/calls/c1", e.admin, nil), http.StatusNoContent)
	if h := e.calls.hungUp(); len(h) != 1 || h[0] != "c1" {
		t.Fatalf("hung up %v", h)
	}
	// another node's call is ended in the state (that node, if alive, hangs up what it holds)
	wantStatus(t, e.do("DELETE", "/api/v1/calls/c2", e.admin, nil), http.StatusNoContent)
	if _, ok := e.store.State().Call("c2"); ok {
		t.Fatal("c2 still active")
	}
	if r := e.store.State().Records(state.RecordQuery{}); len(r) != 1 || r[0].ID != "c2" || r[0].EndReason != state.ReasonAdmin {
		t.Fatalf("records %+v", r)
	}
	if h := e.calls.hungUp(); len(h) != 1 {
		t.Fatalf("hung up %v: c2 is not this node's", h)
	}
	wantErr(t, e.do("DELETE", "/api/v1/calls/nope", e.admin, nil), http.StatusNotFound, CodeNotFound, "")
	e.calls.err = fmt.Errorf("b2bua: %w", ErrNotFound) // ended in between
	wantErr(t, e.do("DELETE", "/api/v1/calls/c3", e.admin, nil), http.StatusNotFound, CodeNotFound, "")
	e.calls.err = errors.New("socket on fire")
	wantErr(t, e.do("DELETE", "/api/v1/calls/c3", e.admin, nil), http.StatusInternalServerError, CodeInternal, "")
	if a := e.store.State().AuditLog(0, 0); len(a) != 2 || a[0].Action != "call.hangup" || a[0].Target != "c1" || a[1].Target != "c2" {
		t.Fatalf("audit %+v", a)
	}
}

func TestCallsWithoutCallControl(t *testing.T) {
	e := newEnv(t, withoutCalls())
	e.propose(state.PutCall(state.Call{ID: "c1", Room: "a", Node: "edge1", State: state.CallAnswered}))
	var l list[state.Call]
	e.do("GET", "/api/v1/calls", e.read, nil).json(t, &l)
	if len(l.Items) != 1 {
		t.Fatalf("calls %+v", l)
	}
	// no call control here, so nothing holds the call: it is ended in the state
	wantStatus(t, e.do("DELETE", "/api/v1/calls/c1", e.admin, nil), http.StatusNoContent)
	if r := e.store.State().Records(state.RecordQuery{}); len(r) != 1 || r[0].EndReason != state.ReasonAdmin {
		t.Fatalf("records %+v", r)
	}
	wantErr(t, e.do("DELETE", "/api/v1/calls/c1", e.admin, nil), http.StatusNotFound, CodeNotFound, "")
}

// TestHangupGhostOnOwner: the state says this node owns a call that it does not hold (its
// previous process did). DELETE ends it in the state instead of answering 500.
func TestHangupGhostOnOwner(t *testing.T) {
	e := newEnv(t)
	e.propose(state.PutCall(state.Call{ID: "ghost", Room: "a", Node: "edge1", State: state.CallAnswered}))
	e.calls.err = fmt.Errorf("b2bua: no such call: %w", state.ErrNotFound)
	wantStatus(t, e.do("DELETE", "/api/v1/calls/ghost", e.admin, nil), http.StatusNoContent)
	if r := e.store.State().Records(state.RecordQuery{}); len(r) != 1 || r[0].ID != "ghost" || r[0].EndReason != state.ReasonAdmin {
		t.Fatalf("records %+v", r)
	}
	wantErr(t, e.do("DELETE", "/api/v1/calls/ghost", e.admin, nil), http.StatusNotFound, CodeNotFound, "")
}

// TestNotReady: while the node catches up with the cluster every API call but the health
// route answers 503 with Retry-After and a JSON error, before the token is even checked (a
// stale node would refuse a valid token and rate-limit its source).
func TestNotReady(t *testing.T) {
	ready := errors.New("catching up")
	e := newEnv(t, func(_ *Config, d *Deps) { d.Ready = func() error { return ready } })
	for range 20 { // far more than the failure budget: nothing is counted
		r := e.do("GET", "/api/v1/rooms", "not-a-token", nil)
		wantErr(t, r, http.StatusServiceUnavailable, CodeUnavailable, "")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
	}
	r := e.do("GET", "/api/v1/health", e.read, nil)
	wantStatus(t, r, http.StatusOK)
	ready = nil
	wantStatus(t, e.do("GET", "/api/v1/rooms", e.read, nil), http.StatusOK)
}

func TestRecordsPaging(t *testing.T) {
	e := newEnv(t)
	base := e.now.Add(-10 * time.Hour)
	for i := range 250 {
		room, reason := "a", "bye"
		if i%5 == 0 {
			room, reason = "b", "timeout"
		}
		e.propose(state.EndCall(state.CallRecord{Call: state.Call{ID: fmt.Sprintf("c%03d", i), Room: room},
			Ended: base.Add(time.Duration(i) * time.Minute), EndReason: reason, Status: 200}))
	}
	var all []state.CallRecord
	path := "/api/v1/records"
	pages := 0
	for {
		var p list[state.CallRecord]
		e.do("GET", path, e.read, nil).json(t, &p)
		pages++
		all = append(all, p.Items...)
		if p.NextCursor == "" {
			break
		}
		path = "/api/v1/records?cursor=" + p.NextCursor
	}
	if pages != 3 || len(all) != 250 || all[0].ID != "c000" || all[249].ID != "c249" {
		t.Fatalf("%d pages, %d records", pages, len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatal("records out of order or repeated")
		}
	}

	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"room", "room=b", 50},
		{"reason", "end_reason=timeout", 50},
		{"room and reason", "room=a&end_reason=timeout", 0},
		{"since", "since=" + url.QueryEscape(base.Add(200*time.Minute).Format(time.RFC3339)), 50},
		{"until", "until=" + url.QueryEscape(base.Add(10*time.Minute).Format(time.RFC3339)), 10},
		{"since ago", "since=" + (10*time.Hour - 240*time.Minute).String(), 10},
		{"limit", "limit=7", 7},
		{"max limit", "limit=1000", 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p list[state.CallRecord]
			r := e.do("GET", "/api/v1/records?"+tc.query, e.read, nil)
			wantStatus(t, r, http.StatusOK)
			r.json(t, &p)
			if len(p.Items) != tc.want {
				t.Fatalf("%d records, want %d", len(p.Items), tc.want)
			}
		})
	}
	var p list[state.CallRecord]
	e.do("GET", "/api/v1/records?room=b&limit=20", e.read, nil).json(t, &p)
	e.do("GET", "/api/v1/records?room=b&limit=20&cursor="+p.NextCursor, e.read, nil).json(t, &p)
	if len(p.Items) != 20 || p.Items[0].ID != "c100" {
		t.Fatalf("filtered second page starts at %s", p.Items[0].ID)
	}

	for _, tc := range []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
		{"cursor=garbage!", "cursor"},
		{"cursor=" + "eDEy", "cursor"}, // base64 of "x12": not ours
		{"since=yesterday", "since"},
		{"until=-5m", "until"},
		{"since=2h&until=3h", "until"},
		{"page=2", "page"},
		{"order=random", "order"},
	} {
		wantErr(t, e.do("GET", "/api/v1/records?"+tc.query, e.read, nil), http.StatusBadRequest, CodeInvalid, tc.field)
	}

	// order=newest: newest first, and the cursor pages toward older records, filters kept.
	var newest []state.CallRecord
	path = "/api/v1/records?order=newest&room=b&limit=20"
	for {
		var p list[state.CallRecord]
		e.do("GET", path, e.read, nil).json(t, &p)
		newest = append(newest, p.Items...)
		if p.NextCursor == "" {
			break
		}
		path = "/api/v1/records?order=newest&room=b&limit=20&cursor=" + p.NextCursor
	}
	if len(newest) != 50 || newest[0].ID != "c245" || newest[49].ID != "c000" {
		t.Fatalf("newest first: %d records, first %s", len(newest), newest[0].ID)
	}
	for i := 1; i < len(newest); i++ {
		if newest[i].Seq >= newest[i-1].Seq {
			t.Fatal("newest-first records out of order or repeated")
		}
	}
}

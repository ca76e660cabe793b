package state

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

var (
	binNow  = time.Date(2026, 12, 4, 12, 30, 1, 123456789, time.UTC)
	binCall = Call{ID: "c1", Room: "board", Direction: Inbound, From: "sip:alice@example.com", To: "sip:board@sbc",
		Source: "198.51.100.7:5060", Node: "n1", State: CallAnswered,
		A: Leg{CallID: "a@x", LocalTag: "l", RemoteTag: "r", Peer: "198.51.100.7:5060", Transport: "UDP",
			Node: "n1", Local: "sip:board@sbc", LocalName: "Board", Remote: "sip:alice@example.com", RemoteName: "Alice",
			Target: "sip:alice@198.51.100.7:5060", Routes: []string{"sip:p1;lr", "sip:p2;lr"}, LocalCSeq: 7,
			RemoteCSeq: 1<<32 - 1, SDP: "v=0\r\n"},
		B:       Leg{CallID: "b@y", Peer: "192.0.2.1:5061", Transport: "TLS"},
		Started: binNow, Answered: binNow.Add(time.Second), AdoptedFrom: "n0",
		Far: Leg{CallID: "f@z", RemoteTag: "rt", Target: "sip:board@192.0.2.9", SDP: "v=0\r\n", Node: "n2"}}
	binBinding = Binding{Room: "board", Contact: "sip:board@192.0.2.1:5060;transport=tcp", Source: "192.0.2.1:5060",
		Transport: "TCP", Local: "203.0.113.1:5060", Node: "n1", CallID: "reg@x", CSeq: 1<<32 - 1,
		UserAgent: "Räumsystem/1.0", Expires: binNow.Add(time.Hour), Updated: binNow,
		Instance: `"<urn:uuid:00000000-0000-1000-8000-000000000001>"`, RegID: 2}
	binRecord = CallRecord{Call: Call{ID: "c2", Started: binNow}, Seq: 9, Ended: binNow.Add(time.Minute),
		Duration: -time.Second, EndReason: "bye", Status: -1}
)

// TestBinaryFixturesSetEveryField: the round trip below proves a field survives the binary
// encoding only if the fixture sets it, so a field added to Binding, Call or Leg without the
// codec (RFC 5626 instance and reg-id were, and every flow was lost on a node writing binary
// payloads) fails here first.
func TestBinaryFixturesSetEveryField(t *testing.T) {
	for name, v := range map[string]any{"Binding": binBinding, "Call": binCall, "Leg": binCall.A} {
		rv := reflect.ValueOf(v)
		for i := range rv.NumField() {
			if rv.Field(i).IsZero() {
				t.Errorf("%s fixture leaves %s zero: set it (and encode it in binary.go)", name, rv.Type().Field(i).Name)
			}
		}
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		cmd  Command
		want any
		dec  func([]byte) (any, error)
	}{
		{"binding", PutBinding(binBinding), binBinding, func(p []byte) (any, error) { return DecodeBinding(p) }},
		{"zero binding", PutBinding(Binding{}), Binding{}, func(p []byte) (any, error) { return DecodeBinding(p) }},
		{"call", PutCall(binCall), binCall, func(p []byte) (any, error) { return DecodeCall(p) }},
		{"record", EndCall(binRecord), binRecord, func(p []byte) (any, error) { return DecodeCallRecord(p) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cmd.Version != binVersion {
				t.Fatalf("version %d, want %d", tt.cmd.Version, binVersion)
			}
			got, err := tt.dec(tt.cmd.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if _, err := tt.dec(tt.cmd.Payload[:len(tt.cmd.Payload)-1]); !errors.Is(err, ErrBadPayload) {
				t.Fatalf("truncated: got %v, want ErrBadPayload", err)
			}
			if _, err := tt.dec(append(tt.cmd.Payload, 0)); !errors.Is(err, ErrBadPayload) {
				t.Fatalf("trailing byte: got %v, want ErrBadPayload", err)
			}
		})
	}
}

// Entries written by older nodes (JSON, version 1) are still in logs: they apply as before.
func TestJSONHotCommandsStillApply(t *testing.T) {
	s := New()
	old := func(ct CmdType, v any) Command {
		p, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return Command{Type: ct, Version: jsonVersion, Payload: p}
	}
	for _, c := range []Command{old(CmdPutBinding, binBinding), old(CmdPutCall, binCall), old(CmdEndCall, CallRecord{Call: binCall, Ended: binNow})} {
		if err := s.Apply(c); err != nil {
			t.Fatalf("%s v1: %v", c.Type, err)
		}
	}
	if len(s.Bindings("board", binNow)) != 1 {
		t.Fatal("JSON binding not applied")
	}
	if len(s.Calls()) != 0 || len(s.Records(RecordQuery{})) != 1 {
		t.Fatalf("calls %d records %d, want 0 and 1", len(s.Calls()), len(s.Records(RecordQuery{})))
	}
	// The binary form of the same writes gives the same state.
	b := New()
	for _, c := range []Command{PutBinding(binBinding), PutCall(binCall), EndCall(CallRecord{Call: binCall, Ended: binNow})} {
		if err := b.Apply(c); err != nil {
			t.Fatalf("%s v2: %v", c.Type, err)
		}
	}
	if s.Hash() != b.Hash() {
		t.Fatal("JSON and binary writes gave different states")
	}
}

func TestBinaryVersionOnlyForHotCommands(t *testing.T) {
	err := New().Apply(Command{Type: CmdPutRoom, Version: binVersion, Payload: []byte(`{"name":"r"}`)})
	if !errors.Is(err, ErrNewerVersion) || !Fatal(err) {
		t.Fatalf("put-room v2: got %v, want fatal ErrNewerVersion", err)
	}
}

// FuzzDecodeBinary: a hot command's payload comes from the replicated log; any bytes give a
// value or ErrBadPayload, and a value re-encodes to a payload that decodes to the same value.
func FuzzDecodeBinary(f *testing.F) {
	for _, c := range []Command{PutBinding(binBinding), PutCall(binCall), EndCall(binRecord), PutBinding(Binding{})} {
		f.Add(c.Payload)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, p []byte) {
		if b, err := DecodeBinding(p); err == nil {
			if b2, err := DecodeBinding(PutBinding(b).Payload); err != nil || !reflect.DeepEqual(b, b2) {
				t.Fatalf("binding round trip: %v", err)
			}
		} else if !errors.Is(err, ErrBadPayload) {
			t.Fatal(err)
		}
		if c, err := DecodeCall(p); err == nil {
			if c2, err := DecodeCall(PutCall(c).Payload); err != nil || !reflect.DeepEqual(c, c2) {
				t.Fatalf("call round trip: %v", err)
			}
		} else if !errors.Is(err, ErrBadPayload) {
			t.Fatal(err)
		}
		if r, err := DecodeCallRecord(p); err == nil {
			if r2, err := DecodeCallRecord(EndCall(r).Payload); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("record round trip: %v", err)
			}
		} else if !errors.Is(err, ErrBadPayload) {
			t.Fatal(err)
		}
	})
}

// Version 2 payloads (before the legs carried their dialog state) are still in logs: they
// decode to the same call without it.
func TestBinaryV2CallStillDecodes(t *testing.T) {
	old := Call{ID: "c1", Room: "board", Direction: Inbound, Node: "n1", State: CallAnswered,
		A: Leg{CallID: "a@x", LocalTag: "l", RemoteTag: "r", Peer: "198.51.100.7:5060", Transport: "UDP"},
		B: Leg{CallID: "b@y", Peer: "192.0.2.1:5061", Transport: "TLS"}, Started: binNow}
	var w binWriter
	for _, s := range []string{old.ID, old.Room, string(old.Direction), old.From, old.To, old.Source, old.Node, string(old.State)} {
		w.str(s)
	}
	for _, l := range []Leg{old.A, old.B} {
		for _, s := range []string{l.CallID, l.LocalTag, l.RemoteTag, l.Peer, l.Transport} {
			w.str(s)
		}
	}
	w.time(old.Started)
	w.time(old.Answered)
	s := New()
	if err := s.Apply(Command{Type: CmdPutCall, Version: binV2, Payload: w}); err != nil {
		t.Fatal(err)
	}
	if got := s.Calls(); len(got) != 1 || !reflect.DeepEqual(got[0], old) {
		t.Fatalf("v2 call decoded as %+v, want %+v", got, old)
	}
}

package turn

import (
	"bytes"
	"testing"

	"github.com/pion/stun/v2"
	pturn "github.com/pion/turn/v3"
)

// FuzzScanSTUN: scanSTUN classifies every packet as pion's read loop does and finds the
// USERNAME, REALM and MESSAGE-INTEGRITY that pion's decoder finds. A packet it calls "other"
// must be ChannelData or something pion cannot decode, so nothing carrying credentials gets
// past the gate unseen.
func FuzzScanSTUN(f *testing.F) {
	key := pturn.GenerateAuthKey("boardroom", realm, "secret")
	for _, setters := range [][]stun.Setter{
		{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)},
		{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.NewUsername("boardroom"),
			stun.NewRealm(realm), stun.NewNonce("abc"), stun.MessageIntegrity(key), stun.Fingerprint},
		{stun.TransactionID, stun.BindingRequest, stun.Fingerprint},
		{stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.NewUsername("1:x"), stun.MessageIntegrity(key)},
	} {
		m, err := stun.Build(setters...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Raw)
	}
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}) // ChannelData
	f.Add([]byte("not a stun message at all, longer than a header"))
	f.Fuzz(func(t *testing.T, p []byte) {
		info, kind := scanSTUN(p)
		m := &stun.Message{Raw: append([]byte(nil), p...)}
		err := m.Decode()
		switch kind {
		case kindOther:
			if err == nil && !isChannelData(p) {
				t.Fatalf("pion decodes a packet the gate does not look at: %v", m)
			}
			return
		case kindMalformed:
			if err == nil {
				t.Fatalf("pion decodes a packet the gate calls malformed: %v", m)
			}
			return
		}
		if err != nil {
			t.Fatalf("the gate scanned a packet pion cannot decode: %v", err)
		}
		if uint16(m.Type.Method) != info.method || uint16(m.Type.Class) != info.class {
			t.Fatalf("type %v, scanned method %x class %d", m.Type, info.method, info.class)
		}
		u, uerr := m.Get(stun.AttrUsername)
		if (uerr == nil) != info.hasUser || (uerr == nil && !bytes.Equal(u, info.username)) {
			t.Fatalf("USERNAME %q/%v, scanned %q/%v", u, uerr, info.username, info.hasUser)
		}
		r, rerr := m.Get(stun.AttrRealm)
		if (rerr == nil) != (info.realm != nil) || !bytes.Equal(r, info.realm) {
			t.Fatalf("REALM %q/%v, scanned %q", r, rerr, info.realm)
		}
		if m.Contains(stun.AttrMessageIntegrity) != info.integrity {
			t.Fatalf("MESSAGE-INTEGRITY %v, scanned %v", m.Contains(stun.AttrMessageIntegrity), info.integrity)
		}
		// The gate's key check must not crash on anything pion would check.
		var in inspector
		in.msg.Raw = append(in.msg.Raw[:0], p...)
		if in.msg.Decode() == nil && info.integrity {
			_ = stun.MessageIntegrity(key).Check(&in.msg)
		}
	})
}

// BenchmarkInspectChannelData: relayed data passes the gate without allocating.
func BenchmarkInspectChannelData(b *testing.B) {
	in := inspector{s: &Server{}, transport: TransportUDP}
	p := make([]byte, 4+160)
	p[0], p[1], p[3] = 0x40, 0x01, 160
	src := loopbackPort
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := in.inspect(p, src); v != pass {
			b.Fatal("dropped")
		}
	}
}

// BenchmarkInspectUnauthenticated: a request without credentials from a known source takes a
// token without allocating.
func BenchmarkInspectUnauthenticated(b *testing.B) {
	in := inspector{s: &Server{limiter: newSourceLimiter(1e12, 1e9)}, transport: TransportUDP}
	p := unauthAllocate(b)
	src := loopbackPort
	b.ReportAllocs()
	for b.Loop() {
		in.inspect(p, src)
	}
}

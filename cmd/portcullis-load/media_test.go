package main

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

var testKinds = []*streamKind{
	{idx: 0, media: "audio", pt: 0, codec: "PCMU/8000", pps: 50, size: 172, tsHz: 8000},
	{idx: 1, media: "video", pt: 96, codec: "H264/90000", pps: 200, size: 1200, tsHz: 90000},
}

// Calls' worth of streams both ways between caller and callee endpoints on real loopback
// sockets: every packet sent with sendmmsg from its endpoint's own address arrives once, on the
// endpoint it was sent to (recvmmsg + IP_PKTINFO), with a latency; evenly paced, and as video
// frames sent as one UDP GSO message each (which the receiver still gets one datagram a packet).
func TestEngineLoopback(t *testing.T) {
	frames := []*streamKind{testKinds[0], {idx: 1, media: "video", pt: 96, codec: "H264/90000", pps: 200, size: 1200, tsHz: 90000, fps: 30}}
	for _, c := range []struct {
		name  string
		kinds []*streamKind
		gso   bool
	}{{"paced", testKinds, false}, {"frames", frames, false}, {"frames-gso", frames, true}} {
		t.Run(c.name, func(t *testing.T) {
			st, msgs := engineLoopback(t, c.kinds, c.gso)
			if c.gso && msgs >= st.Sent {
				t.Fatalf("%d packets went in %d messages: GSO did not carry the frames", st.Sent, msgs)
			}
			t.Logf("%d packets in %d messages", st.Sent, msgs)
		})
	}
}

func engineLoopback(t *testing.T, kinds []*streamKind, gso bool) (mediaStats, uint64) {
	const calls = 20
	eng, err := newEngine(calls*2*len(kinds), 2, kinds, 0, gso)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.stop()
	callers, callees := newPortRange(eng, callerNet), newPortRange(eng, calleeNet)
	var flows []*flow
	start := nowNs()
	for range calls {
		for _, k := range kinds {
			a, _ := callers.open(k)
			b, _ := callees.open(k)
			for _, d := range [][2]*endpoint{{a, b}, {b, a}} {
				f, err := eng.send(d[0], netip.AddrPortFrom(d[1].addr(), uint16(d[1].port)), k, k.pt, start, 500*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				flows = append(flows, f)
			}
		}
	}
	deadline := time.After(30 * time.Second)
	for _, f := range flows {
		select {
		case <-f.done:
		case <-deadline:
			t.Fatal("flows did not finish")
		}
	}
	eng.stop() // waits for packets in flight
	st := eng.stats()
	// Every packet scheduled is sent, or skipped by design when the sender fell more than
	// maxLag behind (a loaded machine stalls it; a real-time source would not send it either),
	// and every packet sent arrives once.
	want := uint64(calls * 2 * (25 + 100)) // 0.5 s of 50 and 200 pps, both ways
	if st.Sent+st.Skipped != want || st.Recv != st.Sent || st.Misrouted != 0 || st.Garbage != 0 || st.Dup != 0 || st.SendErr != 0 {
		t.Fatalf("sent %d + skipped %d (want %d), recv %d (want all sent), misrouted %d garbage %d dup %d send errors %d",
			st.Sent, st.Skipped, want, st.Recv, st.Misrouted, st.Garbage, st.Dup, st.SendErr)
	}
	if st.Skipped > 0 {
		t.Logf("the sender fell behind: %d packets skipped", st.Skipped)
	}
	if st.LatP50 <= 0 {
		t.Fatalf("no latency measured: %+v", st)
	}
	var msgs uint64
	for _, s := range eng.senders {
		msgs += s.msgs
	}
	return st, msgs
}

// The schedule of a stream kind: evenly paced, packet seq leaves at seq/pps; in frames, every
// packet of a frame leaves at the frame's time, and a second holds exactly pps packets.
func TestStreamKindSchedule(t *testing.T) {
	paced := &streamKind{pps: 200}
	frames := &streamKind{pps: 200, fps: 30}
	for _, c := range []struct {
		k       *streamKind
		elapsed int64
		due     uint64
	}{
		{paced, 0, 1}, {paced, 4_999_999, 1}, {paced, 5_000_000, 2}, {paced, 1e9, 201},
		{frames, 0, 7}, {frames, 33_333_333, 7}, {frames, 33_333_334, 14}, {frames, 1e9 - 1, 200}, {frames, 1e9, 207},
	} {
		if got := c.k.due(c.elapsed); got != c.due {
			t.Errorf("fps %d: due(%d) = %d, want %d", c.k.fps, c.elapsed, got, c.due)
		}
	}
	for seq := range uint64(400) {
		for _, k := range []*streamKind{paced, frames, {pps: 30}, {pps: 400, fps: 25}} {
			at := k.at(seq)
			if k.due(at) <= seq || (at > 0 && k.due(at-1) > seq) {
				t.Fatalf("fps %d: packet %d scheduled at %d ns, but due(%d) = %d, due(%d) = %d",
					k.fps, seq, at, at, k.due(at), at-1, k.due(at-1))
			}
		}
	}
}

// A packet sent to the wrong endpoint counts as misrouted, not received.
func TestReceiverMisrouted(t *testing.T) {
	eng, r, f := fuzzEngine(t)
	pkt := testPacket(f, 3)
	r.packet(eng, 42, pkt, &rtp.Header{}, nowNs())
	r.packet(eng, 43, pkt, &rtp.Header{}, nowNs())
	if f.recv != 1 || r.misrouted != 1 {
		t.Fatalf("recv %d misrouted %d, want 1 and 1", f.recv, r.misrouted)
	}
}

func fuzzEngine(t testing.TB) (*engine, *receiver, *flow) {
	t.Helper()
	eng := &engine{flows: make([]atomic.Pointer[flow], 4)}
	f := &flow{id: 1, kind: testKinds[0], total: 100, startupN: 10, seen: make([]uint64, 2), maxSeq: -1,
		hdr: rtp.Header{Version: 2}}
	eng.flows[1].Store(f)
	return eng, &receiver{}, f
}

func testPacket(f *flow, seq uint64) []byte {
	h := rtp.Header{Version: 2, SequenceNumber: uint16(seq)}
	b, _ := h.Marshal()
	p := make([]byte, payloadMin)
	binary.BigEndian.PutUint32(p[0:], magic)
	binary.BigEndian.PutUint32(p[4:], f.id)
	binary.BigEndian.PutUint64(p[8:], seq)
	binary.BigEndian.PutUint64(p[16:], uint64(nowNs()))
	return append(b, p...)
}

// FuzzReceiverPacket: whatever arrives on a media socket (the edge relays it; anything can
// send to it) is counted as received, duplicate, misrouted or garbage, never a crash.
func FuzzReceiverPacket(f *testing.F) {
	_, _, fl := fuzzEngine(f)
	f.Add(testPacket(fl, 0), uint64(7))
	f.Add(testPacket(fl, 99), uint64(7))
	f.Add(testPacket(fl, 100), uint64(7))
	f.Add([]byte{0x80, 0, 0, 1}, uint64(0))
	f.Add(make([]byte, 12), uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, key uint64) {
		eng, r, fl := fuzzEngine(t)
		r.packet(eng, key, b, &rtp.Header{}, nowNs())
		r.packet(eng, key, b, &rtp.Header{}, nowNs())
		if got := fl.recv + fl.dup + r.misrouted + r.garbage; got != 2 {
			t.Fatalf("2 packets counted %d times: recv %d dup %d misrouted %d garbage %d", got, fl.recv, fl.dup, r.misrouted, r.garbage)
		}
	})
}

// TestSelftestOneRate: -selftest -pps runs one step at the rate asked (rounded up to whole
// calls) and reports the packets it received, which compare-media.sh uses as its baseline.
func TestSelftestOneRate(t *testing.T) {
	cfg := config{workers: 1, selftestPPS: 2000}
	rep, err := runSelftest(cfg, testKinds, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Steps) != 1 || rep.Steps[0].OfferedPPS != 2000 {
		t.Fatalf("steps %+v, want one at 2000 pps offered", rep.Steps)
	}
	if st := rep.Steps[0]; st.Recv == 0 || st.Recv > 2*2000 {
		t.Fatalf("received %d packets in a 0.3 s step at 2000 pps", st.Recv)
	}
}

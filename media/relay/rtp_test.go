package relay

import (
	"testing"

	"github.com/pion/rtp"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want Kind
	}{
		{"rtp", rtpPacket(0, 1, 2, 3, "x"), KindRTP},
		{"rtp marker video", rtpPacket(0x80|96, 1, 2, 3, ""), KindRTP},
		{"rtcp sr", rtcpPacket(200), KindRTCP},
		{"rtcp psfb", rtcpPacket(206), KindRTCP},
		{"short", []byte{0x80, 0}, KindInvalid},
		{"version 1", []byte{0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, KindInvalid},
		{"csrc beyond end", []byte{0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, KindInvalid},
		{"stun binding", []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0}, KindInvalid},
		{"short rtcp", []byte{0x80, 200, 0, 1}, KindInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.b); got != tc.want {
				t.Fatalf("Classify = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestClassifyPionPackets classifies packets marshalled by pion/rtp (CSRCs, extensions, padding,
// marker) and checks the in-place field reads against the values pion wrote.
func TestClassifyPionPackets(t *testing.T) {
	for _, p := range []rtp.Packet{
		{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 0xdeadbeef}, Payload: []byte("pcmu")},
		{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 96, SequenceNumber: 65535, Timestamp: 1 << 31, SSRC: 7,
			CSRC: []uint32{1, 2, 3}}, Payload: make([]byte, 1200)},
		{Header: rtp.Header{Version: 2, PayloadType: 127, SequenceNumber: 9, SSRC: 9}, Payload: []byte{1, 2, 3}},
	} {
		if p.PayloadType == 127 { // one-byte header extension (RFC 8285)
			if err := p.Header.SetExtension(1, []byte{0xAA}); err != nil {
				t.Fatal(err)
			}
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if Classify(b) != KindRTP || rtpPT(b) != p.PayloadType || rtpSeq(b) != p.SequenceNumber ||
			rtpTS(b) != p.Timestamp || rtpSSRC(b) != p.SSRC {
			t.Fatalf("pion packet %+v misread", p.Header)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(rtpPacket(0, 1, 2, 3, "payload"))
	f.Add(rtcpPacket(201))
	f.Add([]byte{0x8f, 0x60})
	f.Fuzz(func(t *testing.T, b []byte) {
		k := Classify(b)
		switch k {
		case KindRTP:
			_ = rtpPT(b)
			_ = rtpSeq(b)
			_ = rtpTS(b)
			_ = rtpSSRC(b)
			if len(b) < 12 {
				t.Fatal("RTP shorter than its fixed header")
			}
			// Differential check against pion/rtp: where it parses the header, the fields the
			// relay reads in place must agree with it.
			var h rtp.Header
			if _, err := h.Unmarshal(b); err == nil {
				if h.PayloadType != rtpPT(b) || h.SequenceNumber != rtpSeq(b) || h.Timestamp != rtpTS(b) || h.SSRC != rtpSSRC(b) {
					t.Fatalf("header fields disagree with pion/rtp: %+v", h)
				}
			}
			var tr seqTracker
			var c counters
			tr.update(&c, b, 1, 8000)
		case KindRTCP:
			if len(b) < 8 || b[1] < 192 || b[1] > 223 {
				t.Fatal("bad RTCP classification")
			}
		}
	})
}

func TestSeqTracker(t *testing.T) {
	for _, tc := range []struct {
		name          string
		seqs          []uint16
		lost, reorder uint64
	}{
		{"in order", []uint16{1, 2, 3, 4}, 0, 0},
		{"gap", []uint16{1, 2, 5, 6}, 2, 0},
		{"reorder", []uint16{1, 3, 2, 4}, 0, 1},
		{"wrap", []uint16{65534, 65535, 0, 1}, 0, 0},
		{"wrap with gap", []uint16{65534, 1}, 2, 0},
		{"duplicate", []uint16{1, 2, 2, 3}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr seqTracker
			var c counters
			for i, s := range tc.seqs {
				tr.update(&c, rtpPacket(0, s, uint32(i*160), 7, ""), int64(i)*int64(20e6)+1, 8000)
			}
			st := c.snapshot()
			if st.Lost != tc.lost || st.Reordered != tc.reorder {
				t.Fatalf("lost %d reordered %d, want %d %d", st.Lost, st.Reordered, tc.lost, tc.reorder)
			}
		})
	}
}

func TestJitterZeroForPerfectPacing(t *testing.T) {
	var tr seqTracker
	var c counters
	for i := range 50 {
		tr.update(&c, rtpPacket(0, uint16(i), uint32(i*160), 7, ""), int64(i)*int64(20e6)+1, 8000)
	}
	if j := c.snapshot().JitterMs; j > 0.2 {
		t.Fatalf("jitter %.3f ms for perfect 20 ms pacing", j)
	}
}

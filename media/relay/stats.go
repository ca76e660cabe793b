package relay

import (
	"sync/atomic"
	"time"
)

// DirectionStats are the counters of one direction of a stream (A to B or
// B to A), as received from the sending leg.
type DirectionStats struct {
	Packets     uint64 `json:"packets"`      // RTP packets forwarded
	Bytes       uint64 `json:"bytes"`        // RTP bytes forwarded
	RTCPPackets uint64 `json:"rtcp_packets"` // RTCP packets forwarded
	// Dropped counts valid-looking packets from a source other than the
	// latched one (RTP bleed / injection attempts, stale NAT mappings).
	Dropped uint64 `json:"dropped"`
	// Invalid counts datagrams that are neither RTP nor RTCP, or RTP with a
	// payload type not in the SDP, from unlatched sources.
	Invalid uint64 `json:"invalid"`
	// Held counts packets waiting for the sending leg's SDP (see [StreamConfig.Hold]).
	Held      uint64    `json:"held,omitempty"`
	Lost      uint64    `json:"lost"`      // RFC 3550 cumulative loss (sequence gaps)
	Reordered uint64    `json:"reordered"` // packets older than the highest sequence seen
	JitterMs  float64   `json:"jitter_ms"` // RFC 3550 interarrival jitter estimate
	LastRTP   time.Time `json:"last_rtp,omitzero"`
}

// counters are the live atomics behind DirectionStats. The reader goroutines
// write them; Stats readers load them.
type counters struct {
	packets, bytes, rtcp, dropped, invalid atomic.Uint64
	lostBase                               atomic.Uint64 // loss of previous sequence epochs
	lost, reordered                        atomic.Uint64
	jitter16                               atomic.Uint32 // jitter in timestamp units * 16
	clock                                  atomic.Uint32 // clock rate of the last packet
	lastRTP                                atomic.Int64  // mono ns
}

func (c *counters) snapshot() DirectionStats {
	d := DirectionStats{
		Packets: c.packets.Load(), Bytes: c.bytes.Load(), RTCPPackets: c.rtcp.Load(),
		Dropped: c.dropped.Load(), Invalid: c.invalid.Load(),
		Lost:      c.lostBase.Load() + c.lost.Load(),
		Reordered: c.reordered.Load(),
		LastRTP:   monoTime(c.lastRTP.Load()),
	}
	if clk := c.clock.Load(); clk > 0 {
		d.JitterMs = float64(c.jitter16.Load()) / 16 / float64(clk) * 1000
	}
	return d
}

// seqTracker follows one RTP source's sequence numbers and jitter (RFC 3550
// appendix A.1 and A.8). It is owned by a single reader goroutine.
type seqTracker struct {
	init        bool
	ssrc        uint32
	base        uint32
	maxSeq      uint16
	cycles      uint32
	received    uint32
	lastTransit int32
	haveTransit bool
}

const maxDropout = 3000

func (t *seqTracker) reset(c *counters) {
	if t.init {
		c.lostBase.Add(c.lost.Swap(0))
	}
	*t = seqTracker{}
}

// update accounts one RTP packet (arrival in mono ns) and publishes loss and
// jitter to c.
func (t *seqTracker) update(c *counters, b []byte, now int64, clock uint32) {
	seq, ssrc := rtpSeq(b), rtpSSRC(b)
	if t.init && ssrc != t.ssrc {
		t.reset(c) // new source epoch
	}
	if !t.init {
		t.init, t.ssrc, t.base, t.maxSeq, t.received = true, ssrc, uint32(seq), seq, 1
	} else {
		delta := seq - t.maxSeq
		switch {
		case delta == 0: // duplicate
		case delta < maxDropout:
			if seq < t.maxSeq {
				t.cycles += 1 << 16
			}
			t.maxSeq = seq
			t.received++
		case delta <= 0xffff-100: // big jump: the sender restarted; resync
			c.lostBase.Add(c.lost.Swap(0))
			t.base, t.maxSeq, t.cycles, t.received = uint32(seq), seq, 0, 1
			t.haveTransit = false
		default: // late packet, within the reorder window
			t.received++
			c.reordered.Add(1)
		}
	}
	expected := t.cycles + uint32(t.maxSeq) - t.base + 1
	var lost uint64
	if expected > t.received {
		lost = uint64(expected - t.received)
	}
	c.lost.Store(lost)

	if clock == 0 {
		return
	}
	arrival := int32(uint64(now/1000) * uint64(clock) / 1_000_000)
	transit := arrival - int32(rtpTS(b))
	if t.haveTransit {
		d := transit - t.lastTransit
		if d < 0 {
			d = -d
		}
		j := c.jitter16.Load()
		j += uint32(d) - ((j + 8) >> 4)
		c.jitter16.Store(j)
	}
	t.lastTransit, t.haveTransit = transit, true
	c.clock.Store(clock)
}

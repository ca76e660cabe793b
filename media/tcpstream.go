package media

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/portcullis-sbc/portcullis/media/relay"
	"github.com/portcullis-sbc/portcullis/media/sdp"
)

// tcpBindAttempts is how many pairs allocateTCP tries when the TCP port of
// a pair is held by another socket (an outgoing connection's ephemeral port
// inside the range, another program).
const tcpBindAttempts = 4

// tcpStream is a relayed TCP m-line (BFCP over TCP or TLS).
type tcpStream struct {
	*relay.TCPStream
	media sdp.Media
}

// negotiateTCP handles a TCP m-line that the TCP relay can carry. The relay
// is passive toward both legs (it listens; rooms behind NAT can always
// connect out but rarely accept): the offer it forwards says
// a=setup:passive, and its answer to the offerer says a=setup:passive,
// which RFC 4145 allows when the offer said active or actpass. An offer of
// passive or holdconn, or an answer other than active (the only legal answer
// to a passive offer), would need the relay to connect out; the m-line is
// rejected with port 0 instead and the reason logged. a=connection and
// a=fingerprint pass through: each leg's connection ends at the relay, TLS
// is spliced, not terminated.
func (s *Session) negotiateTCP(from Leg, i int, md sdp.Media, preferred netip.AddrPort, offer, mayAlloc bool) (sdp.Target, error) {
	role, err := md.SetupRole()
	if err == nil && role != sdp.SetupActive && (!offer || role != sdp.SetupActPass) {
		err = fmt.Errorf("a=setup:%s would need the relay to connect out", role)
	}
	if err != nil {
		s.releaseTCP(i)
		s.m.tcpLog.warn(s.m, "TCP m-line rejected", "session", s.id, "m", i, "proto", md.Proto, "from", from.String(), "offer", offer, "reason", err)
		return sdp.Target{}, nil
	}
	if s.streamAt(i) != nil {
		s.release(i) // the m-line moved from UDP to TCP
	}
	st := s.tcpAt(i)
	if st == nil {
		if !offer || !mayAlloc {
			return sdp.Target{}, nil // an answer accepting an m-line we rejected keeps it rejected
		}
		if st, err = s.allocateTCP(i, md); err != nil || st == nil {
			return sdp.Target{}, err
		}
	}
	st.media = md
	st.SetPeer(from.side(), relay.TCPPeer{Addr: md.Addr, Preferred: preferred.Addr()})
	return sdp.Target{Port: st.LocalPort(from.other().side()), Setup: sdp.SetupPassive}, nil
}

// allocateTCP takes two pairs and listens on TCP on their RTP ports. A pair
// whose TCP port is taken is set aside and another one tried; if none can
// be had the m-line is rejected (nil, nil) rather than the call.
func (s *Session) allocateTCP(i int, md sdp.Media) (*tcpStream, error) {
	var held []*relay.Pair
	defer func() {
		for _, p := range held {
			p.ReleaseNow()
		}
	}()
	var lastErr error
	for range tcpBindAttempts {
		pa, err := s.m.pool.Acquire()
		if err != nil {
			return nil, err
		}
		pb, err := s.m.pool.Acquire()
		if err != nil {
			held = append(held, pa)
			return nil, err
		}
		ts, err := relay.NewTCPStream(pa, pb, relay.TCPConfig{Logger: s.m.log.With("session", s.id, "m", i)})
		if err == nil {
			st := &tcpStream{TCPStream: ts, media: md}
			for len(s.tcp) <= i {
				s.tcp = append(s.tcp, nil)
			}
			s.tcp[i] = st
			return st, nil
		}
		held, lastErr = append(held, pa, pb), err
	}
	s.m.tcpLog.warn(s.m, "TCP m-line rejected", "session", s.id, "m", i, "proto", md.Proto, "reason", lastErr)
	return nil, nil
}

func (s *Session) tcpAt(i int) *tcpStream {
	if i < len(s.tcp) {
		return s.tcp[i]
	}
	return nil
}

func (s *Session) releaseTCP(i int) {
	st := s.tcpAt(i)
	if st == nil {
		return
	}
	s.tcp[i] = nil
	st.Close()
	s.m.account(st.Stats())
}

// tcpStats returns the TCP streams' snapshots, with their m-line indexes.
func (s *Session) tcpStats() []StreamStats {
	var out []StreamStats
	for i, st := range s.tcp {
		if st != nil {
			out = append(out, StreamStats{Index: i, Media: st.media.Type, Proto: st.media.Proto,
				Content: st.media.Content, Label: st.media.Label, Stats: st.Stats()})
		}
	}
	return out
}

// withTCP merges the TCP streams' stats into udp, in m-line order.
func (s *Session) withTCP(udp []StreamStats) []StreamStats {
	tcp := s.tcpStats()
	if len(tcp) == 0 {
		return udp
	}
	out := append(udp, tcp...)
	slices.SortFunc(out, func(a, b StreamStats) int { return a.Index - b.Index })
	return out
}

// lastTCP returns the latest activity of the TCP streams, or last.
func (s *Session) lastTCP(last time.Time) time.Time {
	for _, st := range s.tcp {
		if st != nil {
			if t := st.LastRTP(); t.After(last) {
				last = t
			}
		}
	}
	return last
}

// logGate lets one warning through per interval, for logs that a peer's
// signalling can trigger.
type logGate struct {
	mu   sync.Mutex
	next time.Time
}

func (g *logGate) warn(m *Manager, msg string, args ...any) {
	g.mu.Lock()
	now := time.Now()
	ok := !now.Before(g.next)
	if ok {
		g.next = now.Add(10 * time.Second)
	}
	g.mu.Unlock()
	if ok {
		m.log.Warn(msg, args...)
	}
}

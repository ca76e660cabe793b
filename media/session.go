package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/portcullis-sbc/portcullis/media/relay"
	"github.com/portcullis-sbc/portcullis/media/sdp"
)

// Leg names a call leg: LegA is the caller side, LegB the callee side.
type Leg int

// The two legs.
const (
	LegA Leg = iota
	LegB
)

func (l Leg) other() Leg { return 1 - l }

func (l Leg) side() relay.Side { return relay.Side(l) }

func (l Leg) String() string { return relay.Side(l).String() }

// StreamStats describes one relayed m-line.
type StreamStats struct {
	Index   int    `json:"index"` // m-line index
	Media   string `json:"media"` // audio, video, application
	Proto   string `json:"proto"`
	Content string `json:"content,omitempty"` // a=content, e.g. slides
	Label   string `json:"label,omitempty"`
	relay.Stats
}

// Session is the media of one call. Its methods are safe for concurrent use.
type Session struct {
	m         *Manager
	id        string
	onTimeout func(string)

	mu        sync.Mutex
	closed    bool
	streams   []*stream    // by m-line index; nil = none (rejected)
	tcp       []*tcpStream // TCP m-lines by index (tcpstream.go)
	peers     [2][]relay.Peer
	offerMux  []bool // what the pending offer said about rtcp-mux, by index
	offerHold bool
	hold      bool
	lastSig   time.Time // last offer/answer
	version   [2]uint64 // o= version last sent toward each leg
	v6        [2]bool   // the leg's peer signals over IPv6: its SDP carries Config.Advertise6
	lastBody  [2][]byte // last body sent toward each leg, without o=
	fired     bool
	answered  bool       // leg B has sent SDP (or leg A answered B's offer)
	source    netip.Addr // the caller's source, while unanswered
	held      int        // relay ports counted against source while unanswered
}

type stream struct {
	*relay.Stream
	media sdp.Media
	raw   bool
}

func newSession(m *Manager, id string, onTimeout func(string)) *Session {
	return &Session{m: m, id: id, onTimeout: onTimeout, lastSig: time.Now()}
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// Offer handles an SDP offer sent by leg from and returns the body to forward
// to the other leg. It allocates streams for new m-lines, keeps existing
// ones by index and releases rejected ones.
func (s *Session) Offer(from Leg, body []byte, preferred netip.AddrPort) ([]byte, error) {
	return s.negotiate(from, body, preferred, true)
}

// Answer handles the SDP answer sent by leg from (to the other leg's offer)
// and returns the body to forward to the offerer. It keeps a=rtcp-mux only
// when both sides offered it, and switches the session to HoldTimeout when
// the offer or the answer puts the call on hold.
func (s *Session) Answer(from Leg, body []byte, preferred netip.AddrPort) ([]byte, error) {
	return s.negotiate(from, body, preferred, false)
}

func (s *Session) negotiate(from Leg, body []byte, preferred netip.AddrPort, offer bool) ([]byte, error) {
	info, err := sdp.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	if err := s.m.checkStreams(info); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if from == LegB || !offer {
		s.answer()
	} else if !s.answered {
		if err := s.holdUnanswered(preferred.Addr().Unmap(), info.Media); err != nil {
			return nil, err
		}
	}
	to := from.other()
	if preferred.Addr().IsValid() {
		s.v6[from] = is6(preferred.Addr())
	}
	opts := sdp.Options{Addr: s.m.advertiseFor(s.v6[to]), StripICE: !s.m.cfg.KeepICE, Media: make([]sdp.Target, len(info.Media))}
	if offer {
		s.offerMux = make([]bool, len(info.Media))
	}
	if err := s.negotiateStreams(from, info, preferred, offer, opts.Media); err != nil {
		return nil, err
	}
	if offer {
		s.offerHold = info.OnHold()
		s.hold = s.offerHold
	} else {
		s.hold = s.offerHold || info.OnHold()
	}
	s.lastSig = time.Now()
	s.fired = false
	return s.rewrite(to, info, opts)
}

// checkStreams refuses a description with more relayed m-lines than MaxStreams (or more than
// four times as many m-lines in all).
func (m *Manager) checkStreams(info *sdp.Session) error {
	relayed := 0
	for _, md := range info.Media {
		if !md.Rejected() && md.Relayable() {
			relayed++
		}
	}
	if limit := m.cfg.MaxStreams; relayed > limit || len(info.Media) > 4*limit {
		return fmt.Errorf("%w: %d m-lines, %d to relay (limit %d)", ErrTooManyStreams, len(info.Media), relayed, limit)
	}
	return nil
}

// negotiateStreams sets up, updates or releases the stream of every m-line of info, sent by
// leg from, and fills targets (one per m-line) with what the rewritten body advertises. After
// an allocation fails, no other stream is allocated and the error is returned. Callers hold mu.
func (s *Session) negotiateStreams(from Leg, info *sdp.Session, preferred netip.AddrPort, offer bool, targets []sdp.Target) error {
	var allocErr error
	for i, md := range info.Media {
		if !md.Rejected() && md.RelayableTCP() {
			t, err := s.negotiateTCP(from, i, md, preferred, offer, allocErr == nil)
			targets[i] = t
			if err != nil {
				allocErr = err
			}
			continue
		}
		s.releaseTCP(i)
		if md.Rejected() || !md.Relayable() {
			s.release(i)
			continue
		}
		st, err := s.streamFor(i, md, offer, allocErr == nil)
		if err != nil {
			allocErr = err
			continue
		}
		if st != nil {
			targets[i] = s.connect(from, i, st, md, preferred.Addr(), offer)
		}
	}
	for i := len(info.Media); i < max(len(s.streams), len(s.tcp)); i++ {
		s.release(i)
	}
	return allocErr
}

// streamFor returns the UDP stream of m-line i for md: the current one unless the m-line
// changed transport kind, else a new one for an offer (when mayAlloc). It returns nil when the
// m-line stays rejected (an answer accepts an m-line we rejected) or may not be allocated.
func (s *Session) streamFor(i int, md sdp.Media, offer, mayAlloc bool) (*stream, error) {
	st := s.streamAt(i)
	if st != nil && st.raw != !md.IsRTP() {
		s.release(i) // the m-line changed transport kind
		st = nil
	}
	if st != nil {
		return st, nil
	}
	if !offer || !mayAlloc {
		return nil, nil
	}
	return s.allocate(i, md)
}

// connect points stream st at the peer that leg from described in md, settles RTCP mux (the
// offerer muxes only if the answer accepted it) and returns the target the other leg is sent.
func (s *Session) connect(from Leg, i int, st *stream, md sdp.Media, preferred netip.Addr, offer bool) sdp.Target {
	to := from.other()
	st.media = md
	peer := peerOf(md, preferred)
	mux := md.RTCPMux
	if offer {
		s.offerMux[i] = md.RTCPMux
	} else {
		mux = md.RTCPMux && i < len(s.offerMux) && s.offerMux[i]
		peer.RTCPMux = mux
		if op := s.peerAt(to, i); op != nil {
			op.RTCPMux = mux
			st.SetPeer(to.side(), *op)
		}
	}
	s.setPeer(from, i, peer)
	st.SetPeer(from.side(), peer)
	return sdp.Target{Port: st.LocalPort(to.side()), RTCPMux: mux}
}

// rewrite produces the body for leg to, bumping the o= version only when
// the content changed since the last body sent to that leg.
func (s *Session) rewrite(to Leg, body *sdp.Session, opts sdp.Options) ([]byte, error) {
	opts.Version = s.version[to] + 1
	out, err := body.Rewrite(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	stripped := sdp.WithoutOrigin(out)
	if s.lastBody[to] != nil && bytes.Equal(stripped, s.lastBody[to]) {
		opts.Version = s.version[to]
		if out, err = body.Rewrite(opts); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
		}
	}
	s.version[to], s.lastBody[to] = opts.Version, stripped
	return out, nil
}

func peerOf(md sdp.Media, preferred netip.Addr) relay.Peer {
	clock := uint32(8000)
	if md.Type == "video" {
		clock = 90000
	}
	return relay.Peer{
		RTP: md.RTPAddr(), RTCP: md.RTCP, Preferred: preferred,
		PayloadTypes: md.PayloadTypes, ClockRates: md.ClockRates, DefaultClock: clock, RTCPMux: md.RTCPMux,
	}
}

func (s *Session) streamAt(i int) *stream {
	if i < len(s.streams) {
		return s.streams[i]
	}
	return nil
}

func (s *Session) peerAt(l Leg, i int) *relay.Peer {
	if i < len(s.peers[l]) {
		return &s.peers[l][i]
	}
	return nil
}

func (s *Session) setPeer(l Leg, i int, p relay.Peer) {
	for len(s.peers[l]) <= i {
		s.peers[l] = append(s.peers[l], relay.Peer{})
	}
	s.peers[l][i] = p
}

// holdUnanswered counts the ports leg A's offer will hold against the caller's source until
// the callee answers, refusing the offer (before any port is taken) past the source's cap.
func (s *Session) holdUnanswered(src netip.Addr, media []sdp.Media) error {
	if !src.IsValid() {
		return nil
	}
	if s.source.IsValid() && s.source != src {
		s.answer() // a new source for the same call: count afresh
	}
	want := 0
	for i, md := range media {
		if md.Rejected() || !md.Relayable() {
			continue
		}
		if st := s.streamAt(i); st == nil || st.raw != !md.IsRTP() {
			want += portsPerStream
		}
	}
	held, err := s.m.holdUnanswered(src, s.held, s.held+want)
	if err != nil {
		return err
	}
	s.source, s.held = src, held
	return nil
}

// answer ends the unanswered phase: the source's ports no longer count against it.
func (s *Session) answer() {
	s.answered = true
	s.m.releaseUnanswered(s.source, s.held)
	s.held = 0
}

func (s *Session) allocate(i int, md sdp.Media) (*stream, error) {
	pa, err := s.m.pool.Acquire()
	if err != nil {
		return nil, err
	}
	pb, err := s.m.pool.Acquire()
	if err != nil {
		pa.ReleaseNow()
		return nil, err
	}
	st := &stream{
		Stream: relay.NewStream(pa, pb, relay.StreamConfig{LatchWindow: s.m.cfg.LatchWindow, Raw: !md.IsRTP(), Peers: s.m.peers, Kernel: s.m.kernelPath(),
			Logger: s.m.log.With("session", s.id, "m", i)}),
		media: md,
		raw:   !md.IsRTP(),
	}
	for len(s.streams) <= i {
		s.streams = append(s.streams, nil)
	}
	s.streams[i] = st
	return st, nil
}

func (s *Session) release(i int) {
	s.releaseTCP(i)
	if i >= len(s.streams) || s.streams[i] == nil {
		return
	}
	st := s.streams[i]
	s.streams[i] = nil
	st.Close()
	s.m.account(st.Stats())
	for l := range s.peers {
		if i < len(s.peers[l]) {
			s.peers[l][i] = relay.Peer{}
		}
	}
}

// Streams returns a snapshot per relayed m-line, in m-line order.
func (s *Session) Streams() []StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StreamStats
	for i, st := range s.streams {
		if st == nil {
			continue
		}
		out = append(out, StreamStats{Index: i, Media: st.media.Type, Proto: st.media.Proto,
			Content: st.media.Content, Label: st.media.Label, Stats: st.Stats()})
	}
	return s.withTCP(out)
}

// expired reports whether the media timeout has passed. It reports it once;
// a new offer or answer re-arms it.
func (s *Session) expired(now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.fired {
		return "", false
	}
	last := s.lastSig
	for _, st := range s.streams {
		if st != nil {
			if t := st.LastRTP(); t.After(last) {
				last = t
			}
		}
	}
	last = s.lastTCP(last)
	limit := s.m.cfg.Timeout
	if s.hold {
		limit = s.m.cfg.HoldTimeout
	}
	if now.Sub(last) < limit {
		return "", false
	}
	s.fired = true
	return fmt.Sprintf("media timeout: no RTP for %s", limit), true
}

// Renumber makes the o= versions the session writes from now on, toward both legs, higher
// than v. A session that continues a call another relay bridged until then (a call adopted
// from a lost node) must not go back in the versions the peers have seen: a peer takes an
// offer whose version did not grow for no change (RFC 3264 section 8).
func (s *Session) Renumber(v uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.version {
		s.version[i] = max(s.version[i], v)
		s.lastBody[i] = nil
	}
}

// Close releases every stream (its ports drain) and forgets the session.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for i := range max(len(s.streams), len(s.tcp)) {
		s.release(i)
	}
	s.answer()
	s.mu.Unlock()
	s.m.forget(s)
}

// ForPeer returns body, an SDP this session wrote toward a leg whose peer was not known yet
// (an offer forked to several bindings), with the relay address of peer's family: with
// Config.Advertise6 set, an IPv6 peer gets it in o=, c= and a=rtcp in place of Advertise, an
// IPv4 peer the reverse. The relay sockets take both families on the same ports.
func (s *Session) ForPeer(body []byte, peer netip.AddrPort) []byte {
	a4, a6 := s.m.cfg.Advertise, s.m.cfg.Advertise6
	if !a6.IsValid() || !peer.Addr().IsValid() || a4 == a6 {
		return body
	}
	from, to := a4, a6
	if !is6(peer.Addr()) {
		from, to = a6, a4
	}
	old := []byte(sdpAddrType(from) + " " + from.Unmap().String() + "\r\n")
	if !bytes.Contains(body, old) {
		return body
	}
	return bytes.ReplaceAll(body, old, []byte(sdpAddrType(to)+" "+to.Unmap().String()+"\r\n"))
}

func sdpAddrType(a netip.Addr) string {
	if is6(a) {
		return "IN IP6"
	}
	return "IN IP4"
}

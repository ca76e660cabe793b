package registrar

import (
	"net/netip"
	"strings"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

// FailReason says why a room's registration did not complete.
type FailReason string

// Registration failure reasons (stable: they are metric labels).
const (
	FailBadCredentials FailReason = "bad_credentials"       // wrong password, or another room's
	FailUnsupported    FailReason = "unsupported_algorithm" // answered with an algorithm we do not verify
	FailMalformed      FailReason = "malformed_credentials" // an Authorization header we cannot parse
	FailReplay         FailReason = "replayed_credentials"  // a nonce count used before
	FailNoAnswer       FailReason = "challenge_unanswered"  // a 401, then no credentials within ChallengeTimeout
)

// Failure is a registration of a configured room that did not complete. Unknown users are not
// reported (they are scans: the guard counts them).
type Failure struct {
	Room      string
	Source    netip.AddrPort
	Transport string
	UserAgent string
	Reason    FailReason
	Code      int    // the status the room got: 403, or 401 for an unanswered challenge
	Detail    string // words an admin understands
}

// maxPending bounds the challenges awaiting an answer (a flood of REGISTERs for real room
// names cannot grow it further; those past the bound are not followed).
const maxPending = 4096

type pendingKey struct {
	room string
	src  netip.AddrPort
}

type pendingChallenge struct {
	at        time.Time
	transport string
	userAgent string
}

// challenged notes a 401 sent to a configured room, unless one from that source is already
// awaiting its answer (its clock keeps running: a client that re-sends unauthenticated
// REGISTERs has not answered either).
func (r *Registrar) challenged(room string, src netip.AddrPort, transport, userAgent string) {
	if r.cfg.OnFailure == nil {
		return
	}
	if _, ok := r.store.State().Room(room); !ok {
		return
	}
	k := pendingKey{room, src}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pending[k]; ok || len(r.pending) >= maxPending {
		return
	}
	r.pending[k] = pendingChallenge{at: r.cfg.Now(), transport: transport, userAgent: clip(userAgent)}
}

// answered forgets the challenge of room from src: credentials came back.
func (r *Registrar) answered(room string, src netip.AddrPort) {
	r.mu.Lock()
	delete(r.pending, pendingKey{room, src})
	r.mu.Unlock()
}

// SweepChallenges reports the challenges sent at least ChallengeTimeout ago that got no answer
// (Run calls it; exported for tests that move the clock).
func (r *Registrar) SweepChallenges() {
	cut := r.cfg.Now().Add(-r.cfg.ChallengeTimeout)
	var out []Failure
	r.mu.Lock()
	for k, p := range r.pending {
		if p.at.After(cut) {
			continue
		}
		delete(r.pending, k)
		out = append(out, Failure{Room: k.room, Source: k.src, Transport: p.transport, UserAgent: p.userAgent,
			Reason: FailNoAnswer, Code: 401,
			Detail: "challenge not answered within " + r.cfg.ChallengeTimeout.String() + " (offered " +
				strings.Join(r.auth.Algorithms(), ", ") + "): the room may not support these digest algorithms (registrar.algorithms)"})
	}
	r.mu.Unlock()
	for _, f := range out {
		r.fail(f)
	}
}

// failed reports a refused REGISTER of a configured room.
func (r *Registrar) failed(room string, src netip.AddrPort, transport, userAgent string, res digest.Result, alg string) {
	if r.cfg.OnFailure == nil {
		return
	}
	if _, ok := r.store.State().Room(room); !ok {
		return
	}
	f := Failure{Room: room, Source: src, Transport: transport, UserAgent: clip(userAgent), Code: 403}
	switch res {
	case digest.BadCredentials, digest.OK, digest.UnknownUser: // OK/UnknownUser: authenticated as another room
		f.Reason, f.Detail = FailBadCredentials, "wrong credentials (digest response does not match the room's password)"
	case digest.Unsupported:
		f.Reason, f.Detail = FailUnsupported, "answered with digest algorithm "+clip(alg)+"; offered "+strings.Join(r.auth.Algorithms(), ", ")
	case digest.Replay:
		f.Reason, f.Detail = FailReplay, "credentials with a nonce count used before"
	default:
		f.Reason, f.Detail = FailMalformed, "malformed Authorization header"
	}
	r.fail(f)
}

func (r *Registrar) fail(f Failure) {
	r.log.Info("registration failed", "room", f.Room, "source", f.Source, "reason", f.Reason, "detail", f.Detail)
	r.cfg.OnFailure(f)
}

func clip(s string) string {
	if len(s) > 128 {
		return s[:128]
	}
	return s
}

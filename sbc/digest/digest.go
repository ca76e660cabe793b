package digest

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Algorithms offered and accepted.
const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// Result is the outcome of Verify.
type Result int

// Results. UnknownUser is for logs and metrics only: answer it exactly like BadCredentials.
const (
	OK             Result = iota
	Missing               // no credentials: send the first challenge
	Malformed             // unparsable credentials
	BadCredentials        // wrong response, wrong realm/uri/algorithm/qop, or a nonce not ours
	UnknownUser           // no such user (same work and same answer as BadCredentials)
	Stale                 // correct response on an expired nonce: challenge with stale=true
	Replay                // nonce-count not above the highest seen for this nonce
	Unsupported           // an algorithm other than MD5 and SHA-256 (whoever the user is)
)

var resultNames = [...]string{"ok", "missing", "malformed", "bad_credentials", "unknown_user", "stale", "replay", "unsupported_algorithm"}

func (r Result) String() string {
	if r >= 0 && int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "result(" + strconv.Itoa(int(r)) + ")"
}

// Lookup returns a user's hex HA1 hashes; either may be empty when unknown for that algorithm.
type Lookup func(user string) (ha1md5, ha1sha256 string, ok bool)

// Config configures an Authenticator.
type Config struct {
	Realm string
	// Secret signs nonces; all nodes of a cluster should share it (at least 16 bytes).
	Secret []byte
	// NonceTTL is how long a nonce stays fresh (default 5 minutes).
	NonceTTL time.Duration
	// MaxNonces is the size of the nonce-count (replay) table, rounded up to a power of two
	// (default 262144, 2 MiB): a nonce is accepted while fewer nonces than that were issued
	// after it (at 6,000 challenges/s, 43 s), then answered Stale.
	MaxNonces int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Algorithms are the challenges offered, in order (default SHA-256 then MD5; the node
	// passes registrar.algorithms, MD5 alone by default). Some clients (SIPp) read only the
	// first challenge and know only MD5; baresip 1.0 gives up on a 401 naming any algorithm but
	// MD5: offer MD5 alone for them.
	Algorithms []string
}

// Authenticator issues challenges and verifies credentials. It is safe for concurrent use.
type Authenticator struct {
	realm    string
	secret   []byte
	ttl      time.Duration
	now      func() time.Time
	opaque   string
	dummyMD5 string
	dummySHA string
	nc       ncTable
	macs     sync.Pool // *signer: nonce HMACs without a new keyed hash each time
	algs     []string
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Realm == "" {
		return nil, ErrNoRealm
	}
	if len(cfg.Secret) < 16 {
		return nil, ErrNoSecret
	}
	if cfg.NonceTTL <= 0 {
		cfg.NonceTTL = 5 * time.Minute
	}
	if cfg.MaxNonces <= 0 {
		cfg.MaxNonces = 1 << 18
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{SHA256, MD5}
	}
	for _, alg := range cfg.Algorithms {
		if alg != SHA256 && alg != MD5 {
			return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
		}
	}
	a := &Authenticator{
		algs:   append([]string(nil), cfg.Algorithms...),
		realm:  cfg.Realm,
		secret: append([]byte(nil), cfg.Secret...),
		ttl:    cfg.NonceTTL,
		now:    cfg.Now,
	}
	a.nc.init(cfg.MaxNonces)
	var op [16]byte
	a.sign([]byte("opaque:"+cfg.Realm), op[:])
	a.opaque = hex.EncodeToString(op[:])
	var pw [16]byte
	_, _ = rand.Read(pw[:])
	a.dummyMD5 = HA1(MD5, "dummy", cfg.Realm, hex.EncodeToString(pw[:]))
	a.dummySHA = HA1(SHA256, "dummy", cfg.Realm, hex.EncodeToString(pw[:]))
	return a, nil
}

// Algorithms returns the algorithms challenged, in order.
func (a *Authenticator) Algorithms() []string { return append([]string(nil), a.algs...) }

// Realm returns the realm.
func (a *Authenticator) Realm() string { return a.realm }

// Challenge returns the WWW-Authenticate / Proxy-Authenticate header values to send, SHA-256
// first then MD5 by default (RFC 8760 §2.4; see Config.Algorithms), all with the same nonce, qop="auth" and opaque.
func (a *Authenticator) Challenge(stale bool) []string {
	n := a.newNonce()
	tail := `", nonce="` + n + `", opaque="` + a.opaque + `", qop="auth"`
	if stale {
		tail += ", stale=true"
	}
	out := make([]string, len(a.algs))
	for i, alg := range a.algs {
		out[i] = `Digest realm="` + quote(a.realm) + tail + ", algorithm=" + alg
	}
	return out
}

func quote(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// HA1 returns hex(H(user:realm:password)) for alg MD5 or SHA-256 ("" for any other alg).
func HA1(alg, user, realm, password string) string {
	h := newHash(alg)
	if h == nil {
		return ""
	}
	return hexJoin(h, user, realm, password)
}

func newHash(alg string) hash.Hash {
	switch {
	case alg == "" || strings.EqualFold(alg, MD5):
		return md5.New()
	case strings.EqualFold(alg, SHA256):
		return sha256.New()
	}
	return nil
}

// hexJoin returns hex(H(parts joined by ':')): one write into the hash and one allocation for
// the joined parts (a write per part converted each one), one for the result.
func hexJoin(h hash.Hash, parts ...string) string {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n+sha256.Size)
	for i, p := range parts {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, p...)
	}
	h.Write(b)
	sum := h.Sum(b[len(b):])
	var out [2 * sha256.Size]byte
	k := hex.Encode(out[:], sum)
	return string(out[:k])
}

// Verify checks a Digest Authorization / Proxy-Authorization value for a request with the given
// method and Request-URI (requestURI "" skips the uri check). It returns the claimed username
// (empty unless parsed) and the outcome.
func (a *Authenticator) Verify(method, requestURI, headerValue string, lookup Lookup) (string, Result) {
	if strings.TrimSpace(headerValue) == "" {
		return "", Missing
	}
	c, err := Parse(headerValue)
	if err != nil {
		return "", Malformed
	}
	if c.Username == "" || c.Nonce == "" || c.Response == "" || c.URI == "" {
		return c.Username, Malformed
	}
	h := newHash(c.Algorithm)
	consistent := h != nil && c.Realm == a.realm && !c.Userhash &&
		strings.EqualFold(c.QOP, "auth") && c.HasNc && c.Cnonce != "" &&
		(c.Opaque == "" || c.Opaque == a.opaque) && uriMatches(c.URI, requestURI)
	supported := h != nil
	if h == nil {
		h = md5.New()
	}
	sha := h.Size() == sha256.Size

	ha1md5, ha1sha, known := lookup(c.Username)
	ha1 := ha1md5
	if sha {
		ha1 = ha1sha
	}
	if ha1 == "" {
		known = false
	}
	if !known {
		ha1 = a.dummyMD5
		if sha {
			ha1 = a.dummySHA
		}
	}
	valid, expired, seq := a.checkNonce(c.Nonce)

	// Same work whatever happened above: one HA2 and one response hash, one constant-time compare.
	ha2 := hexJoin(h, method, c.URI)
	h.Reset()
	want := hexJoin(h, ha1, c.Nonce, ncHex(c.Nc), c.Cnonce, "auth", ha2)
	match := subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(c.Response))) == 1

	switch {
	case !supported:
		return c.Username, Unsupported // says nothing about the user: decided before the lookup
	case !known:
		return c.Username, UnknownUser
	case !match || !consistent || !valid:
		return c.Username, BadCredentials
	case expired:
		return c.Username, Stale
	}
	ok, stale := a.nc.advance(seq, c.Nc)
	switch {
	case stale:
		return c.Username, Stale
	case !ok:
		return c.Username, Replay
	}
	return c.Username, OK
}

func ncHex(n uint32) string {
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = digits[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

// uriMatches compares the digest-uri with the Request-URI, ignoring URI parameters, the case
// of the scheme and host, and a default port (5060/5061) written on one side only, since UAs
// differ in what they echo (SIPp writes the port it sent to even when the Request-URI has none).
func uriMatches(got, want string) bool {
	if want == "" {
		return true
	}
	if got == want {
		return true
	}
	g, w := stripParams(got), stripParams(want)
	if strings.EqualFold(g, w) {
		return true
	}
	for _, port := range []string{":5060", ":5061"} {
		if strings.EqualFold(g, w+port) || strings.EqualFold(g+port, w) {
			return true
		}
	}
	return false
}

func stripParams(u string) string {
	if i := strings.IndexAny(u, ";?"); i >= 0 {
		u = u[:i]
	}
	return strings.Trim(u, "<>")
}

package digest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// A nonce is base64url(timestamp(8) | random(8) | HMAC-SHA256(secret, timestamp|random)[:16]):
// stateless, so any node sharing the secret can check it.
const (
	nonceRaw = 32
	nonceLen = 43 // base64.RawURLEncoding of 32 bytes
)

func (a *Authenticator) newNonce() string {
	var raw [nonceRaw]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(a.now().UnixNano()))
	_, _ = rand.Read(raw[8:16])
	a.sign(raw[:16], raw[16:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

func (a *Authenticator) sign(msg, out []byte) {
	m := hmac.New(sha256.New, a.secret)
	m.Write(msg)
	var sum [sha256.Size]byte
	copy(out, m.Sum(sum[:0]))
}

// checkNonce reports whether the nonce is ours (valid) and whether it has expired.
func (a *Authenticator) checkNonce(n string) (valid, expired bool) {
	if len(n) != nonceLen {
		return false, false
	}
	var raw [nonceRaw]byte
	if k, err := base64.RawURLEncoding.Decode(raw[:], []byte(n)); err != nil || k != nonceRaw {
		return false, false
	}
	var mac [16]byte
	a.sign(raw[:16], mac[:])
	if !hmac.Equal(mac[:], raw[16:]) {
		return false, false
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	age := a.now().Sub(issued)
	return true, age > a.ttl || age < -time.Minute
}

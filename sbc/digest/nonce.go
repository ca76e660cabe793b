package digest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"time"
)

// A nonce is base64url(timestamp(8) | sequence(4) | random(4) | HMAC-SHA256(secret,
// timestamp|sequence|random)[:16]): its signature and age are checked without state; the
// sequence number is its slot in the replay table (ncTable) of the Authenticator that issued it.
const (
	nonceRaw = 32
	nonceLen = 43 // base64.RawURLEncoding of 32 bytes
)

func (a *Authenticator) newNonce() string {
	var raw [nonceRaw]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(a.now().UnixNano()))
	binary.BigEndian.PutUint32(raw[8:12], a.nc.issue())
	_, _ = rand.Read(raw[12:16])
	a.sign(raw[:16], raw[16:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// signer is a keyed HMAC and room for its sum, reused through Authenticator.macs.
type signer struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

func (a *Authenticator) sign(msg, out []byte) {
	s, _ := a.macs.Get().(*signer)
	if s == nil {
		s = &signer{mac: hmac.New(sha256.New, a.secret)}
	}
	s.mac.Reset()
	s.mac.Write(msg)
	copy(out, s.mac.Sum(s.sum[:0]))
	a.macs.Put(s)
}

// checkNonce reports whether the nonce is ours (valid), whether it has expired, and its
// sequence number.
func (a *Authenticator) checkNonce(n string) (valid, expired bool, seq uint32) {
	if len(n) != nonceLen {
		return false, false, 0
	}
	var raw [nonceRaw]byte
	var src [nonceLen]byte
	copy(src[:], n)
	if k, err := base64.RawURLEncoding.Decode(raw[:], src[:]); err != nil || k != nonceRaw {
		return false, false, 0
	}
	var mac [16]byte
	a.sign(raw[:16], mac[:])
	if !hmac.Equal(mac[:], raw[16:]) {
		return false, false, 0
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	age := a.now().Sub(issued)
	return true, age > a.ttl || age < -time.Minute, binary.BigEndian.Uint32(raw[8:12])
}

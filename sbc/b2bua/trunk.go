package b2bua

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// TrunkHeader carries the proof that an INVITE comes from another node of the cluster, which
// hands this node a call for a room registered here (internal SIP trunk).
const TrunkHeader = "X-Portcullis-Trunk"

// trunkSkew is how far a trunk signature's time may be from ours.
const trunkSkew = 60 * time.Second

// SignTrunk returns the TrunkHeader value for a call from node to room with Call-ID callID.
func SignTrunk(key []byte, node, callID, room string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return "node=" + node + ";ts=" + ts + ";sig=" + trunkMAC(key, node, callID, room, ts)
}

// VerifyTrunk checks a TrunkHeader value and returns the node that signed it.
func VerifyTrunk(key []byte, value, callID, room string, now time.Time) (string, bool) {
	if len(key) == 0 || value == "" {
		return "", false
	}
	var node, ts, sig string
	for _, f := range strings.Split(value, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		switch k {
		case "node":
			node = v
		case "ts":
			ts = v
		case "sig":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || node == "" {
		return "", false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > trunkSkew || d < -trunkSkew {
		return "", false
	}
	want := trunkMAC(key, node, callID, room, ts)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", false
	}
	return node, true
}

func trunkMAC(key []byte, node, callID, room, ts string) string {
	m := hmac.New(sha256.New, key)
	for _, s := range []string{node, callID, room, ts} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

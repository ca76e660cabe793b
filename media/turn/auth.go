package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // TURN REST credentials are HMAC-SHA1 by definition (coturn use-auth-secret)
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	pturn "github.com/pion/turn/v3"
)

// KeyFromHA1 turns a stored SIP digest HA1 (hex MD5 of user:realm:password)
// into a TURN long-term key. They are the same MD5 when the TURN realm
// equals the SIP realm. Using it makes the room's SIP password a TURN
// password: the node does so only when told to (turn.sip_credentials).
func KeyFromHA1(ha1Hex string) ([]byte, error) {
	k, err := hex.DecodeString(ha1Hex)
	if err != nil || len(k) != 16 {
		return nil, fmt.Errorf("%w: %q", ErrBadHA1, ha1Hex)
	}
	return k, nil
}

// isRESTUser reports a TURN REST username, "<expiry-unix>:<user>".
func isRESTUser(u string) (user string, ok bool) {
	ts, rest, found := strings.Cut(u, ":")
	if !found {
		return "", false
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return "", false
	}
	return rest, true
}

// quotaUser is the identity a quota is counted against: the user part of a
// REST username (fresh credentials must not reset the quota), else the name.
func quotaUser(u string) string {
	if user, ok := isRESTUser(u); ok {
		return user
	}
	return u
}

// RESTCredentials returns TURN REST credentials for user valid for ttl: username
// "<expiry-unix>:<user>", password base64(HMAC-SHA1(secret, username)) (coturn
// use-auth-secret, pion's GenerateLongTermTURNRESTCredentials).
func RESTCredentials(secret, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + user
	return username, restPassword(secret, username)
}

func restPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	_, _ = mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// keyFor returns the long-term key of username in realm, as pion's AuthHandler gets it: a
// REST username (when a secret is set) that has not expired, else the rooms' credentials
// (when configured, for our realm only).
func (s *Server) keyFor(username, realm string, src netip.AddrPort) ([]byte, bool) {
	if s.cfg.RESTSecret != "" {
		if ts, _, found := strings.Cut(username, ":"); found {
			exp, err := strconv.ParseInt(ts, 10, 64)
			if err == nil {
				if exp < time.Now().Unix() {
					return nil, false
				}
				return pturn.GenerateAuthKey(username, realm, restPassword(s.cfg.RESTSecret, username)), true
			}
		}
	}
	if s.cfg.Credentials != nil && realm == s.cfg.Realm {
		return s.cfg.Credentials(username, src)
	}
	return nil, false
}

// authHandler hands pion the key. Failures are counted by the inspector, which has checked
// the request's integrity with the same key before pion sees it.
func (s *Server) authHandler() pturn.AuthHandler {
	return func(username, realm string, src net.Addr) ([]byte, bool) {
		var ap netip.AddrPort
		if a, err := netip.ParseAddrPort(src.String()); err == nil {
			ap = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		}
		return s.keyFor(username, realm, ap)
	}
}

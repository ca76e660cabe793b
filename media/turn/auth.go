package turn

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	pturn "github.com/pion/turn/v3"
)

// KeyFromHA1 turns a stored SIP digest HA1 (hex MD5 of user:realm:password)
// into a TURN long-term key. They are the same MD5 when the TURN realm
// equals the SIP realm, so rooms can use TURN without a second password.
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

// authHandler combines the rooms' credentials and the REST shared secret.
func (s *Server) authHandler() pturn.AuthHandler {
	var rest pturn.AuthHandler
	if s.cfg.RESTSecret != "" {
		rest = pturn.LongTermTURNRESTAuthHandler(s.cfg.RESTSecret, pionLogs{s.log}.NewLogger("turn-rest"))
	}
	return func(username, realm string, src net.Addr) ([]byte, bool) {
		if rest != nil {
			if _, ok := isRESTUser(username); ok {
				key, ok := rest(username, realm, src)
				if !ok {
					s.authFailures.Add(1)
				}
				return key, ok
			}
		}
		if s.cfg.Credentials != nil && realm == s.cfg.Realm {
			if key, ok := s.cfg.Credentials(username); ok {
				return key, true
			}
		}
		s.authFailures.Add(1)
		return nil, false
	}
}

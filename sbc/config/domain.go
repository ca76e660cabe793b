package config

import "strings"

// LegacyDomain is the sip.domain default of releases before the realm was recorded in the
// cluster's state. It names the product, so a new cluster never gets it; a cluster whose state
// predates the recording (rooms stored with HA1 computed in this realm) keeps it.
const LegacyDomain = "portcullis.local"

// ValidDomain reports whether s may be a SIP domain and digest realm: not empty, at most 253
// bytes, printable ASCII with none of the characters that end a host in a SIP URI or a quoted
// realm.
func ValidDomain(s string) bool {
	if s == "" || len(s) > 253 || strings.ContainsAny(s, " @:;/\"\\<>?,") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// DomainSource says where the SIP domain and digest realm come from, for `config check` and the
// start banner.
func (s SIP) DomainSource() string {
	if s.Domain != "" {
		return s.Domain + " (sip.domain)"
	}
	return "recorded in the cluster's state at its first start (see `portcullis doctor`): " +
		"sip.advertise when it is a host name or IPv4 address, else a random token; " +
		LegacyDomain + " for a cluster whose rooms predate the recording"
}

package sdp

import (
	"strings"
)

// line is one "t=value" SDP line.
type line struct {
	typ byte
	val string
}

// doc is a lenient line model of an SDP body: session lines, then one
// section per m-line (whose first line is the m= line).
type doc struct {
	session []line
	media   [][]line
}

// parseLines splits b leniently: CRLF or LF, blank lines skipped, lines that
// are not "x=..." with x a lower-case letter skipped, control characters
// (other than tab) make a line invalid and it is skipped.
func parseLines(b []byte) doc {
	var d doc
	rest := string(b) // one copy: every line's value is a substring of it
	for len(rest) > 0 {
		var raw string
		raw, rest, _ = strings.Cut(rest, "\n")
		raw = strings.TrimRight(raw, "\r")
		if len(raw) < 2 || raw[1] != '=' || raw[0] < 'a' || raw[0] > 'z' || hasControl(raw) {
			continue
		}
		l := line{typ: raw[0], val: strings.TrimSpace(raw[2:])}
		if l.typ == 'm' {
			d.media = append(d.media, []line{l})
			continue
		}
		if n := len(d.media); n > 0 {
			d.media[n-1] = append(d.media[n-1], l)
		} else {
			d.session = append(d.session, l)
		}
	}
	return d
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

func attr(l line) (key, val string, ok bool) {
	if l.typ != 'a' {
		return "", "", false
	}
	k, v, _ := strings.Cut(l.val, ":")
	return k, v, true
}

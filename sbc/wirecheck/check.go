package wirecheck

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// MaxProblems bounds the problems reported for one message.
const MaxProblems = 16

// singleValued are the headers whose grammar allows one value, so one occurrence (RFC 3261
// §7.3.1 and §20; RFC 3262 RSeq/RAck; RFC 4028 Session-Expires/Min-SE), by lower-case full name.
var singleValued = map[string]bool{
	"call-id": true, "content-disposition": true, "content-length": true, "content-type": true,
	"cseq": true, "date": true, "expires": true, "from": true, "max-forwards": true,
	"mime-version": true, "min-expires": true, "organization": true, "priority": true,
	"reply-to": true, "retry-after": true, "server": true, "subject": true, "timestamp": true,
	"to": true, "user-agent": true, "rseq": true, "rack": true, "session-expires": true, "min-se": true,
}

// compact maps RFC 3261 §7.3.3 compact forms (and RFC 4028's x) to full names.
var compact = map[string]string{
	"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
	"c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
	"x": "session-expires",
}

// Check returns what is wrong with one SIP message (nil when nothing is). It never panics.
func Check(msg []byte) []string {
	var out []string
	bad := func(format string, a ...any) {
		if len(out) < MaxProblems {
			out = append(out, fmt.Sprintf(format, a...))
		}
	}
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		return []string{"no CRLF CRLF ends the header section"}
	}
	head, body := string(msg[:end+2]), msg[end+4:]
	lines := strings.Split(strings.TrimSuffix(head, "\r\n"), "\r\n")
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			bad("line %d: bare CR or LF", i+1)
		}
	}
	request, method := checkStartLine(lines[0], bad)
	h := checkHeaders(lines[1:], bad)
	h.checkRequired(request, method, bad)
	h.checkBody(body, bad)
	return out
}

// headers counts the header fields of a message by full lower-case name and keeps the last
// value of each.
type headers struct {
	count  map[string]int
	values map[string]string
}

// checkHeaders checks the header lines (after the start line) one by one and collects them.
func checkHeaders(lines []string, bad func(string, ...any)) headers {
	h := headers{count: map[string]int{}, values: map[string]string{}}
	for i, l := range lines {
		if l == "" {
			bad("line %d: empty line inside the headers", i+2)
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			continue // folded continuation (RFC 3261 §7.3.1), allowed
		}
		colon := strings.IndexByte(l, ':')
		if colon <= 0 {
			bad("line %d: header without a name and colon: %.40q", i+2, l)
			continue
		}
		name := strings.TrimRight(l[:colon], " \t")
		if !isToken(name) {
			bad("line %d: header name %.40q is not a token", i+2, name)
			continue
		}
		n := strings.ToLower(name)
		if full, ok := compact[n]; ok {
			n = full
		}
		h.count[n]++
		h.values[n] = strings.TrimSpace(l[colon+1:])
	}
	return h
}

// checkRequired checks that single-valued headers appear once, that the mandatory ones are
// there and that a request's CSeq names its method.
func (h headers) checkRequired(request bool, method string, bad func(string, ...any)) {
	for n, c := range h.count {
		if c > 1 && singleValued[n] {
			bad("%s appears %d times (single-valued, RFC 3261 §7.3.1)", n, c)
		}
	}
	need := []string{"via", "from", "to", "call-id", "cseq"}
	if request {
		need = append(need, "max-forwards")
	}
	for _, n := range need {
		if h.count[n] == 0 {
			bad("%s missing (RFC 3261 §8.1.1)", n)
		}
	}
	if request && h.count["cseq"] == 1 {
		if f := strings.Fields(h.values["cseq"]); len(f) != 2 || f[1] != method {
			bad("CSeq %q does not match the method %s", h.values["cseq"], method)
		}
	}
}

// checkBody checks Content-Length and Content-Type against the body.
func (h headers) checkBody(body []byte, bad func(string, ...any)) {
	switch cl, ok := h.values["content-length"]; {
	case !ok:
		bad("Content-Length missing")
	default:
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 {
			bad("Content-Length %q is not a number", cl)
		} else if n != len(body) {
			bad("Content-Length %d but the body has %d bytes", n, len(body))
		}
	}
	if len(body) > 0 && h.count["content-type"] == 0 {
		bad("a body without Content-Type (RFC 3261 §7.4.1)")
	}
	if len(body) == 0 && h.count["content-type"] > 0 {
		bad("Content-Type %q without a body", h.values["content-type"])
	}
}

// checkStartLine checks a Request-Line or Status-Line; it returns whether it is a request and
// its method.
func checkStartLine(l string, bad func(string, ...any)) (bool, string) {
	f := strings.Split(l, " ")
	if strings.HasPrefix(l, "SIP/") {
		if len(f) < 2 || f[0] != "SIP/2.0" || len(f[1]) != 3 || f[1][0] < '1' || f[1][0] > '6' ||
			strings.Trim(f[1], "0123456789") != "" {
			bad("bad Status-Line %.60q", l)
		}
		return false, ""
	}
	if len(f) != 3 || !isToken(f[0]) || f[1] == "" || f[2] != "SIP/2.0" || !strings.Contains(f[1], ":") {
		bad("bad Request-Line %.60q", l)
		return true, f[0]
	}
	return true, f[0]
}

// isToken reports whether s is an RFC 3261 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("-.!%*_+`'~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

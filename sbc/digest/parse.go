package digest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Parser limits.
const (
	MaxHeaderLen = 4096 // longest Authorization value accepted
	MaxParams    = 24   // most auth-params accepted
	MaxValueLen  = 1024 // longest single parameter value
)

// Credentials are the parsed parameters of a Digest Authorization header.
type Credentials struct {
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string // as sent; "" means MD5
	Cnonce    string
	Opaque    string
	QOP       string
	Nc        uint32
	HasNc     bool
	Userhash  bool
}

// Parse parses a Digest Authorization / Proxy-Authorization header value. It rejects control
// characters, over-long values, duplicate parameters, unterminated quotes and stray bytes.
// Unknown parameters are ignored.
func Parse(v string) (*Credentials, error) {
	if len(v) > MaxHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLong, len(v))
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, fmt.Errorf("%w: control character at %d", ErrMalformed, i)
		}
	}
	s := strings.TrimLeft(v, " \t")
	if len(s) < 6 || !strings.EqualFold(s[:6], "digest") || (len(s) > 6 && s[6] != ' ' && s[6] != '\t') {
		return nil, fmt.Errorf("%w: not a Digest scheme", ErrMalformed)
	}
	p := parser{s: s, i: 6}
	c := &Credentials{}
	var seen uint32
	n := 0
	for {
		p.skipWS()
		if p.i >= len(p.s) {
			break
		}
		if n > 0 {
			if p.s[p.i] != ',' {
				return nil, fmt.Errorf("%w: expected ',' at %d", ErrMalformed, p.i)
			}
			p.i++
			p.skipWS()
			if p.i >= len(p.s) {
				return nil, fmt.Errorf("%w: trailing ','", ErrMalformed)
			}
		}
		n++
		if n > MaxParams {
			return nil, fmt.Errorf("%w: too many parameters", ErrMalformed)
		}
		name := p.token()
		if name == "" {
			return nil, fmt.Errorf("%w: expected parameter name at %d", ErrMalformed, p.i)
		}
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != '=' {
			return nil, fmt.Errorf("%w: expected '=' after %q", ErrMalformed, name)
		}
		p.i++
		p.skipWS()
		val, quoted, err := p.value()
		if err != nil {
			return nil, err
		}
		bit, dst := c.field(strings.ToLower(name))
		if bit == 0 {
			continue // unknown parameter
		}
		if seen&bit != 0 {
			return nil, fmt.Errorf("%w: duplicate parameter %q", ErrMalformed, name)
		}
		seen |= bit
		switch {
		case dst != nil:
			*dst = val
		case bit == bitNc:
			if quoted || len(val) != 8 {
				return nil, fmt.Errorf("%w: nc must be 8 hex digits", ErrMalformed)
			}
			nc, err := strconv.ParseUint(val, 16, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: nc: %v", ErrMalformed, err)
			}
			c.Nc, c.HasNc = uint32(nc), true
		case bit == bitUserhash:
			c.Userhash = strings.EqualFold(val, "true")
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: no parameters", ErrMalformed)
	}
	return c, nil
}

// The parameters Parse reads, in the order of their bits in the duplicate check.
var paramNames = [...]string{"username", "realm", "nonce", "uri", "response", "algorithm", "cnonce",
	"opaque", "qop", "nc", "userhash"}

// Bits of the parameters that are not plain strings.
const (
	bitNc       uint32 = 1 << 9
	bitUserhash uint32 = 1 << 10
)

// field returns the bit of the parameter name (lower case; 0: not one Parse reads) and the
// string it is stored in (nil for nc and userhash, which Parse converts).
func (c *Credentials) field(name string) (uint32, *string) {
	i := slices.Index(paramNames[:], name)
	if i < 0 {
		return 0, nil
	}
	dst := [len(paramNames)]*string{&c.Username, &c.Realm, &c.Nonce, &c.URI, &c.Response, &c.Algorithm,
		&c.Cnonce, &c.Opaque, &c.QOP}
	return 1 << i, dst[i]
}

type parser struct {
	s string
	i int
}

func (p *parser) skipWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

func (p *parser) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// value reads a token or a quoted-string (with \-escapes, commas allowed inside quotes).
func (p *parser) value() (string, bool, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		p.i++
		var b strings.Builder
		start := p.i
		escaped := false
		for p.i < len(p.s) {
			c := p.s[p.i]
			switch {
			case c == '\\':
				if p.i+1 >= len(p.s) {
					return "", false, fmt.Errorf("%w: dangling escape", ErrMalformed)
				}
				if !escaped {
					b.Grow(len(p.s) - start)
					escaped = true
				}
				b.WriteString(p.s[start:p.i])
				p.i++
				start = p.i // the escaped byte is kept
				p.i++
			case c == '"':
				v := p.s[start:p.i]
				if escaped {
					b.WriteString(v)
					v = b.String()
				}
				p.i++
				if len(v) > MaxValueLen {
					return "", false, fmt.Errorf("%w: value too long", ErrMalformed)
				}
				return v, true, nil
			case c >= 0x80:
				// UTF-8 is allowed in quoted strings (usernames); control bytes were rejected.
				p.i++
			default:
				p.i++
			}
		}
		return "", false, fmt.Errorf("%w: unterminated quoted string", ErrMalformed)
	}
	v := p.token()
	if v == "" {
		return "", false, fmt.Errorf("%w: empty value at %d", ErrMalformed, p.i)
	}
	if len(v) > MaxValueLen {
		return "", false, fmt.Errorf("%w: value too long", ErrMalformed)
	}
	return v, false, nil
}

package edge

import (
	"bytes"
)

// framer follows message boundaries in a SIP byte stream (RFC 3261 section 18.3) without
// parsing it: it finds the end of each header block, reads Content-Length from it and skips the
// body. The edge uses it to time each message and bound its size; sipgo does the real parsing.
type framer struct {
	max     int    // largest message allowed (headers + body)
	inMsg   bool   // a message has started and is not complete
	size    int    // bytes of the current message so far
	body    int    // body bytes still to skip; -1 while reading headers
	tail    []byte // the last up to 3 header bytes of the previous chunk, to find "\r\n\r\n" across reads
	hdr     []byte // header bytes of the current message, kept to read Content-Length (bounded by max)
	started bool   // the current message has non-CRLF bytes (leading CRLFs are keepalives)
	done    int    // messages completed so far
}

func newFramer(max int) *framer { return &framer{max: max, body: -1} }

// feed consumes one chunk read from the stream. It reports whether a message is in progress
// after the chunk, and an error when the stream breaks the size limit or framing.
func (f *framer) feed(p []byte) (inMsg bool, err error) {
	for len(p) > 0 {
		if f.body > 0 {
			n := min(f.body, len(p))
			f.body -= n
			f.size += n
			p = p[n:]
			if f.size > f.max {
				return true, ErrMessageTooLarge
			}
			if f.body == 0 {
				f.reset()
				f.done++
			}
			continue
		}
		if !f.started {
			// Skip CRLF keepalives between messages.
			i := 0
			for i < len(p) && (p[i] == '\r' || p[i] == '\n') {
				i++
			}
			p = p[i:]
			if len(p) == 0 {
				break
			}
			f.started, f.inMsg = true, true
		}
		// Reading headers: look for the blank line, also across the previous chunk's tail.
		joined := append(f.tail, p...)
		end := bytes.Index(joined, []byte("\r\n\r\n"))
		if end < 0 {
			f.size += len(p)
			f.hdr = append(f.hdr, p...)
			if f.size > f.max {
				return true, ErrMessageTooLarge
			}
			f.tail = append(f.tail[:0], joined[max(0, len(joined)-3):]...)
			p = nil
			break
		}
		used := end + 4 - len(f.tail) // bytes of p up to and including the blank line
		f.hdr = append(f.hdr, p[:used]...)
		f.size += used
		p = p[used:]
		if f.size > f.max {
			return true, ErrMessageTooLarge
		}
		cl, ok := contentLength(f.hdr)
		if !ok {
			return true, ErrBadFraming
		}
		f.tail = f.tail[:0]
		if cl == 0 {
			f.reset()
			f.done++
			continue
		}
		if f.size+cl > f.max {
			return true, ErrMessageTooLarge
		}
		f.body = cl
	}
	return f.inMsg, nil
}

func (f *framer) reset() {
	f.inMsg, f.started, f.size, f.body = false, false, 0, -1
	f.hdr = f.hdr[:0]
	f.tail = f.tail[:0]
}

// contentLength finds Content-Length (or its compact form "l") in a header block. A stream
// message without it has no body (RFC 3261 requires it on streams; 0 is the safe reading).
// A value that is not a number, or two different values, is a framing error.
func contentLength(hdr []byte) (int, bool) {
	n, found := 0, false
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			hdr = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimSpace(line[:colon])
		if !bytes.EqualFold(name, []byte("Content-Length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		v := bytes.TrimSpace(line[colon+1:])
		if len(v) == 0 || len(v) > 9 {
			return 0, false
		}
		x := 0
		for _, c := range v {
			if c < '0' || c > '9' {
				return 0, false
			}
			x = x*10 + int(c-'0')
		}
		if found && x != n {
			return 0, false
		}
		n, found = x, true
	}
	return n, true
}

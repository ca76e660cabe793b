package sinks

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/connpeek"
)

// syslogSender writes RFC 5424 messages: one per UDP datagram (RFC 5426), or octet-counted on
// one TCP or TLS connection (RFC 6587 3.4.1, RFC 5425), redialled after any error.
type syslogSender struct {
	spec Spec
	host string // HOSTNAME field: the node ID

	mu     sync.Mutex
	conn   net.Conn
	closed bool
	buf    []byte
}

func newSyslog(spec Spec, node string) *syslogSender {
	return &syslogSender{spec: spec, host: node}
}

// SDID is the structured data element every message carries, with the item's dedup key and
// type. 32473 is the private enterprise number RFC 5612 reserves for documentation.
const SDID = "portcullis@32473"

// formatSyslog appends one RFC 5424 message for it: the JSON envelope is the MSG, and the
// structured data names the dedup key so a receiver can deduplicate without parsing MSG.
func formatSyslog(dst []byte, it Item, facility int, host string) []byte {
	sev := 6 // informational
	if it.Type == TypeEvent {
		sev = 4 // warning
	}
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(facility*8+sev), 10)
	dst = append(dst, ">1 "...)
	if it.Time.IsZero() {
		dst = append(dst, '-')
	} else {
		dst = it.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z07:00")
	}
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, host, 255)
	dst = append(dst, " portcullis - "...)
	dst = appendHeaderField(dst, strings.ReplaceAll(it.Type, "_", "-"), 32)
	dst = append(dst, " ["+SDID+" id=\""...)
	dst = appendParam(dst, it.ID)
	dst = append(dst, "\" type=\""...)
	dst = appendParam(dst, it.Type)
	dst = append(dst, "\"] "...)
	return append(dst, it.Body...)
}

// appendHeaderField appends s as a header field: printable US-ASCII without spaces, at most
// max bytes, "-" when empty (RFC 5424 6.2).
func appendHeaderField(dst []byte, s string, max int) []byte {
	n := 0
	for i := 0; i < len(s) && n < max; i++ {
		if c := s[i]; c > 32 && c < 127 {
			dst = append(dst, c)
			n++
		}
	}
	if n == 0 {
		dst = append(dst, '-')
	}
	return dst
}

// appendParam appends an SD-PARAM value with '"', '\' and ']' escaped (RFC 5424 6.3.3).
func appendParam(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', ']':
			dst = append(dst, '\\', c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func (s *syslogSender) send(ctx context.Context, items []Item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.conn != nil && s.spec.Network != "udp" && connpeek.PeerGone(s.conn) {
		// The server closed the connection while it was idle: writing into it would seem to
		// succeed and lose the batch.
		_ = s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(s.spec.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c := s.conn
	_ = c.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	err := s.write(items)
	if err != nil {
		_ = c.Close()
		s.conn = nil
		return fmt.Errorf("syslog %s://%s: %w", s.spec.Network, s.spec.Address, err)
	}
	return nil
}

func (s *syslogSender) write(items []Item) error {
	if s.spec.Network == "udp" {
		for _, it := range items {
			s.buf = formatSyslog(s.buf[:0], it, s.spec.Facility, s.host)
			if len(s.buf) > s.spec.MaxMessage {
				s.buf = s.buf[:s.spec.MaxMessage] // RFC 5426 3.2: truncated, header and SD first
			}
			if _, err := s.conn.Write(s.buf); err != nil {
				return err
			}
		}
		return nil
	}
	// One write per batch: "LEN SP MSG" frames (octet counting).
	s.buf = s.buf[:0]
	var msg []byte
	for _, it := range items {
		msg = formatSyslog(msg[:0], it, s.spec.Facility, s.host)
		s.buf = strconv.AppendInt(s.buf, int64(len(msg)), 10)
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, msg...)
	}
	_, err := s.conn.Write(s.buf)
	if cap(s.buf) > 4<<20 {
		s.buf = nil // do not pin a huge batch's buffer
	}
	return err
}

func (s *syslogSender) dial(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.spec.Timeout)
	defer cancel()
	var (
		c   net.Conn
		err error
	)
	switch s.spec.Network {
	case "tls":
		cfg := s.spec.TLS
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		d := &tls.Dialer{Config: cfg}
		c, err = d.DialContext(ctx, "tcp", s.spec.Address)
	default:
		var d net.Dialer
		c, err = d.DialContext(ctx, s.spec.Network, s.spec.Address)
	}
	if err != nil {
		return fmt.Errorf("syslog %s://%s: %w", s.spec.Network, s.spec.Address, err)
	}
	s.conn = c
	return nil
}

func (s *syslogSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn != nil {
		err := s.conn.Close()
		s.conn = nil
		return err
	}
	return nil
}

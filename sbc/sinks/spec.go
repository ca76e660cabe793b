package sinks

import (
	"crypto/tls"
	"fmt"
	"time"
)

// Kind is the type of a sink.
type Kind string

// Sink kinds.
const (
	KindSyslog  Kind = "syslog"
	KindWebhook Kind = "webhook"
	KindFile    Kind = "file"
)

// Stream is what a sink carries.
type Stream int

// Streams, the label values of the metrics.
const (
	Records Stream = iota // call records, from the replicated state, shipped by the leader
	Events                // security events, shipped by the node that saw them
	numStreams
)

func (s Stream) String() string {
	if s == Records {
		return "records"
	}
	return "events"
}

// Spec describes one sink. The zero values of the tuning fields take the defaults below.
type Spec struct {
	Name    string
	Kind    Kind
	Records bool // ship call records
	Events  bool // ship security events
	// Queue bounds the security events waiting for this sink; more are dropped and counted.
	// Default 10000.
	Queue int
	// Batch is the most items sent at once (one webhook POST, one file sync, one TCP write).
	// Default 100.
	Batch int
	// RetryMin and RetryMax bound the backoff between failed deliveries (doubling).
	// Defaults 1s and 30s.
	RetryMin, RetryMax time.Duration
	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration

	// Syslog: Network is udp, tcp or tls; Address is host:port. Facility is 1-23 (0: the default,
	// 16, local0; 0 itself, kern, is the kernel's). MaxMessage is the largest UDP datagram (longer messages are truncated, their
	// structured data with the dedup key first). TLS is the client config for tls.
	Network    string
	Address    string
	Facility   int
	MaxMessage int
	TLS        *tls.Config

	// Webhook: URL receives the POSTs; when Secret is set, SignatureHeader (default
	// X-Portcullis-Signature) carries "sha256=" + hex(HMAC-SHA256(Secret, body)).
	URL             string
	Secret          []byte
	SignatureHeader string

	// File: Path is the JSON-lines file; it is rotated when it would grow over MaxBytes
	// (default 100 MiB), keeping Keep older files (Path.1 newest .. Path.Keep).
	Path     string
	MaxBytes int64
	Keep     int
}

// Defaults.
const (
	DefaultQueue           = 10000
	DefaultBatch           = 100
	DefaultRetryMin        = time.Second
	DefaultRetryMax        = 30 * time.Second
	DefaultTimeout         = 10 * time.Second
	DefaultFacility        = 16 // local0
	DefaultMaxMessage      = 2048
	DefaultSignatureHeader = "X-Portcullis-Signature"
	DefaultMaxBytes        = 100 << 20
)

func (s *Spec) withDefaults() Spec {
	out := *s
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&out.Queue, DefaultQueue)
	def(&out.Batch, DefaultBatch)
	def(&out.MaxMessage, DefaultMaxMessage)
	if out.RetryMin <= 0 {
		out.RetryMin = DefaultRetryMin
	}
	if out.RetryMax < out.RetryMin {
		out.RetryMax = max(DefaultRetryMax, out.RetryMin)
	}
	if out.Timeout <= 0 {
		out.Timeout = DefaultTimeout
	}
	if out.Facility == 0 {
		out.Facility = DefaultFacility
	}
	if out.SignatureHeader == "" {
		out.SignatureHeader = DefaultSignatureHeader
	}
	if out.MaxBytes <= 0 {
		out.MaxBytes = DefaultMaxBytes
	}
	return out
}

func (s *Spec) check() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("%w: a sink needs a name", ErrBadSpec)
	case !s.Records && !s.Events:
		return fmt.Errorf("%w: sink %q ships nothing", ErrBadSpec, s.Name)
	case s.Facility < 0 || s.Facility > 23:
		return fmt.Errorf("%w: sink %q: facility %d is not 0-23", ErrBadSpec, s.Name, s.Facility)
	}
	switch s.Kind {
	case KindSyslog:
		if s.Network != "udp" && s.Network != "tcp" && s.Network != "tls" {
			return fmt.Errorf("%w: sink %q: network %q is not udp, tcp or tls", ErrBadSpec, s.Name, s.Network)
		}
		if s.Address == "" {
			return fmt.Errorf("%w: sink %q needs an address", ErrBadSpec, s.Name)
		}
	case KindWebhook:
		if s.URL == "" {
			return fmt.Errorf("%w: sink %q needs a url", ErrBadSpec, s.Name)
		}
	case KindFile:
		if s.Path == "" {
			return fmt.Errorf("%w: sink %q needs a path", ErrBadSpec, s.Name)
		}
	default:
		return fmt.Errorf("%w: sink %q: kind %q is not syslog, webhook or file", ErrBadSpec, s.Name, s.Kind)
	}
	return nil
}

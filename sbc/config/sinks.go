package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Sink sends call records and security events out of the box (package sbc/sinks). Fields
// that belong to another type are refused.
type Sink struct {
	// Name identifies the sink in metrics, logs and its replicated cursor: renaming a sink
	// ships every record the state holds again. Required; 1-63 letters, digits, '.', '_', '-'.
	Name string `yaml:"name"`
	// Type is syslog, webhook or file. Required.
	Type string `yaml:"type"`
	// Streams lists what the sink carries: records (call records, shipped by the cluster
	// leader, at least once) and events (security events, shipped by the node that saw them,
	// best effort). Default: [records, events].
	Streams []string `yaml:"streams"`
	// Queue bounds the security events waiting for this sink on a node; more are dropped and
	// counted (portcullis_sink_dropped_total). Call records wait in the replicated state.
	// Default: 10000.
	Queue int `yaml:"queue"`
	// Batch is the most items sent at once. Default: 100.
	Batch int `yaml:"batch"`
	// RetryMin and RetryMax bound the backoff between failed deliveries, doubling from one to
	// the other. Defaults: 1s, 30s.
	RetryMin Duration `yaml:"retry_min"`
	RetryMax Duration `yaml:"retry_max"`
	// Timeout bounds one delivery attempt. Default: 10s.
	Timeout Duration `yaml:"timeout"`

	// Address (syslog) is udp://HOST:PORT (RFC 5426, one message per datagram), tcp://HOST:PORT
	// (RFC 6587 octet counting) or tls://HOST:PORT (RFC 5425). Required for syslog.
	Address string `yaml:"address"`
	// Facility (syslog) is a facility name (local0..local7, user, daemon, auth, ...) or number
	// 1-23 (0, kern, is the kernel's). Default: local0.
	Facility string `yaml:"facility"`
	// MaxMessageSize (syslog over UDP) truncates longer messages (the header and the structured
	// data with the record's id come first). 480-65507. Default: 2048.
	MaxMessageSize int `yaml:"max_message_size"`
	// CA (syslog over TLS, webhook over https) is a PEM file of CAs to trust instead of the
	// system's. Default: the system roots.
	CA string `yaml:"ca"`
	// ServerName (syslog over TLS) is the name checked in the server's certificate. Default:
	// the address's host.
	ServerName string `yaml:"server_name"`

	// URL (webhook) receives a POST of a JSON array of items per batch; 2xx means delivered.
	// Required for webhook.
	URL string `yaml:"url"`
	// Secret (webhook) signs each body: SignatureHeader: sha256=<hex HMAC-SHA256(secret, body)>.
	// Never logged. Default: none (unsigned).
	Secret string `yaml:"secret"`
	// SignatureHeader (webhook). Default: X-Portcullis-Signature.
	SignatureHeader string `yaml:"signature_header"`

	// Path (file) is the JSON-lines file, one item per line. Required for file.
	Path string `yaml:"path"`
	// MaxSize (file) rotates the file before it grows over this many bytes (at least 4096).
	// Default: 104857600 (100 MiB).
	MaxSize int64 `yaml:"max_size"`
	// Keep (file) is how many rotated files to keep (path.1 newest). Default: 5.
	Keep *int `yaml:"keep"`
}

var headerNameRe = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_` + "`" + `|~-]+$`)

// Facilities are the syslog facility names (RFC 5424 6.2.1).
var Facilities = map[string]int{
	"user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// FacilityCode returns the facility number of a validated sink.
func (s Sink) FacilityCode() int {
	if n, ok := Facilities[s.Facility]; ok {
		return n
	}
	n, _ := strconv.Atoi(s.Facility)
	return n
}

// Ships reports whether the validated sink carries stream (records or events).
func (s Sink) Ships(stream string) bool {
	return slices.Contains(s.Streams, stream)
}

// SyslogAddr splits a validated syslog address into network (udp, tcp, tls) and host:port.
func (s Sink) SyslogAddr() (network, addr string) {
	network, addr, _ = strings.Cut(s.Address, "://")
	return network, addr
}

func (c *Config) validateSinks(v *validator) {
	seen := map[string]bool{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		at := func(f string) string { return fmt.Sprintf("sinks[%d].%s", i, f) }
		if !nodeIDRe.MatchString(s.Name) {
			v.fail(at("name"), "%q must be 1-63 letters, digits, '.', '_' or '-'", s.Name)
		} else if seen[s.Name] {
			v.fail(at("name"), "sink %q is listed twice", s.Name)
		}
		seen[s.Name] = true
		if len(s.Streams) == 0 {
			s.Streams = []string{"records", "events"}
		}
		for j, x := range s.Streams {
			if x != "records" && x != "events" {
				v.fail(fmt.Sprintf("sinks[%d].streams[%d]", i, j), "%q must be records or events", x)
			}
		}
		validateSinkQueue(v, s, at)
		if !validateSinkFields(v, s, at) {
			continue
		}
		switch s.Type {
		case "syslog":
			c.validateSyslogSink(v, s, at)
		case "webhook":
			validateWebhookSink(v, s, at)
		case "file":
			validateFileSink(v, s, at)
		}
	}
}

// validateSinkQueue sets the defaults of a sink's queue, batches, retries and timeout and
// checks their bounds.
func validateSinkQueue(v *validator, s *Sink, at func(string) string) {
	if s.Queue == 0 {
		s.Queue = 10000
	}
	if s.Batch == 0 {
		s.Batch = 100
	}
	if s.RetryMin == 0 {
		s.RetryMin = Duration(1e9)
	}
	if s.RetryMax == 0 {
		s.RetryMax = max(Duration(30e9), s.RetryMin)
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(10e9)
	}
	if s.Queue < 1 || s.Queue > 10_000_000 {
		v.fail(at("queue"), "%d must be between 1 and 10000000", s.Queue)
	}
	if s.Batch < 1 || s.Batch > 10000 {
		v.fail(at("batch"), "%d must be between 1 and 10000", s.Batch)
	}
	if s.RetryMin < 0 || s.RetryMax < s.RetryMin {
		v.fail(at("retry_min"), "need 0 < retry_min <= retry_max")
	}
	if s.Timeout < 0 {
		v.fail(at("timeout"), "must be positive")
	}
}

// sinkFields lists the type-specific settings of a sink, in the order they are reported.
var sinkFields = []string{"address", "facility", "max_message_size", "ca", "server_name", "url", "secret",
	"signature_header", "path", "max_size", "keep"}

// sinkTypeFields are the settings that belong to each sink type.
var sinkTypeFields = map[string][]string{
	"syslog":  {"address", "facility", "max_message_size", "ca", "server_name"},
	"webhook": {"url", "secret", "signature_header", "ca"},
	"file":    {"path", "max_size", "keep"},
}

// validateSinkFields checks the sink's type and that it sets only that type's settings; it
// returns false for an unknown type.
func validateSinkFields(v *validator, s *Sink, at func(string) string) bool {
	mine, ok := sinkTypeFields[s.Type]
	if !ok {
		v.fail(at("type"), "%q must be syslog, webhook or file", s.Type)
		return false
	}
	set := map[string]bool{
		"address": s.Address != "", "facility": s.Facility != "", "max_message_size": s.MaxMessageSize != 0,
		"ca": s.CA != "", "server_name": s.ServerName != "", "url": s.URL != "", "secret": s.Secret != "",
		"signature_header": s.SignatureHeader != "", "path": s.Path != "", "max_size": s.MaxSize != 0, "keep": s.Keep != nil,
	}
	for _, f := range sinkFields {
		if set[f] && !slices.Contains(mine, f) {
			v.fail(at(f), "is not a setting of a %s sink", s.Type)
		}
	}
	return true
}

func validateWebhookSink(v *validator, s *Sink, at func(string) string) {
	u, err := url.Parse(s.URL)
	switch {
	case s.URL == "":
		v.fail(at("url"), "a webhook sink needs a url")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.fail(at("url"), "must be an http:// or https:// URL with a host")
	}
	if s.SignatureHeader == "" {
		s.SignatureHeader = "X-Portcullis-Signature"
	} else if !headerNameRe.MatchString(s.SignatureHeader) {
		v.fail(at("signature_header"), "%q is not an HTTP header name", s.SignatureHeader)
	}
	checkFile(v, at("ca"), s.CA)
}

func validateFileSink(v *validator, s *Sink, at func(string) string) {
	if s.Path == "" {
		v.fail(at("path"), "a file sink needs a path")
	}
	if s.MaxSize == 0 {
		s.MaxSize = 100 << 20
	} else if s.MaxSize < 4096 {
		v.fail(at("max_size"), "%d must be at least 4096 bytes", s.MaxSize)
	}
	if s.Keep == nil {
		k := 5
		s.Keep = &k
	} else if *s.Keep < 0 || *s.Keep > 1000 {
		v.fail(at("keep"), "%d must be between 0 and 1000", *s.Keep)
	}
}

func (c *Config) validateSyslogSink(v *validator, s *Sink, at func(string) string) {
	network, addr, ok := strings.Cut(s.Address, "://")
	if s.Address == "" {
		v.fail(at("address"), "a syslog sink needs an address (udp://, tcp:// or tls://HOST:PORT)")
	} else if !ok || (network != "udp" && network != "tcp" && network != "tls") {
		v.fail(at("address"), "%q must be udp://, tcp:// or tls://HOST:PORT", s.Address)
	} else if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
		v.fail(at("address"), "%q must be udp://, tcp:// or tls://HOST:PORT", s.Address)
	}
	if s.Facility == "" {
		s.Facility = "local0"
	} else if _, ok := Facilities[s.Facility]; !ok {
		if n, err := strconv.Atoi(s.Facility); err != nil || n < 1 || n > 23 {
			v.fail(at("facility"), "%q must be a facility name (local0..local7, user, daemon, auth, ...) or 1-23 (0, kern, is the kernel's)", s.Facility)
		}
	}
	if s.MaxMessageSize == 0 {
		s.MaxMessageSize = 2048
	} else if s.MaxMessageSize < 480 || s.MaxMessageSize > 65507 {
		v.fail(at("max_message_size"), "%d must be between 480 and 65507", s.MaxMessageSize)
	}
	if network != "tls" && (s.CA != "" || s.ServerName != "") {
		v.fail(at("ca"), "ca and server_name need a tls:// address")
	}
	checkFile(v, at("ca"), s.CA)
}

func checkFile(v *validator, field, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		v.fail(field, "cannot read %q: %v", path, err)
	}
}

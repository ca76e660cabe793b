package config

import (
	"strings"
	"testing"
)

func TestSinksValidate(t *testing.T) {
	tests := []struct {
		name, body, wantLine, wantField string
	}{
		{"no name", "sinks:\n  - type: file\n    path: /tmp/x.jsonl\n", ":2:", "sinks[0].name"},
		{"unknown type", "sinks:\n  - name: a\n    type: kafka\n", ":3:", "sinks[0].type"},
		{"unknown key", "sinks:\n  - name: a\n    type: file\n    paht: /tmp/x\n", ":4:", "paht"},
		{"twice", "sinks:\n  - {name: a, type: file, path: /tmp/a}\n  - {name: a, type: file, path: /tmp/b}\n", ":3:", "listed twice"},
		{"bad stream", "sinks:\n  - name: a\n    type: file\n    path: /tmp/a\n    streams: [records, cdr]\n", ":5:", "sinks[0].streams[1]"},
		{"syslog without address", "sinks:\n  - name: a\n    type: syslog\n", ":2:", "sinks[0].address"},
		{"syslog bad scheme", "sinks:\n  - name: a\n    type: syslog\n    address: relp://siem:514\n", ":4:", "sinks[0].address"},
		{"syslog no port", "sinks:\n  - name: a\n    type: syslog\n    address: udp://siem\n", ":4:", "sinks[0].address"},
		{"syslog bad facility", "sinks:\n  - name: a\n    type: syslog\n    address: udp://siem:514\n    facility: local9\n", ":5:", "sinks[0].facility"},
		{"syslog ca over udp", "sinks:\n  - name: a\n    type: syslog\n    address: udp://siem:514\n    ca: /etc/hosts\n", ":5:", "sinks[0].ca"},
		{"webhook field on file", "sinks:\n  - name: a\n    type: file\n    path: /tmp/a\n    secret: s3\n", ":5:", "not a setting of a file sink"},
		{"webhook bad url", "sinks:\n  - name: a\n    type: webhook\n    url: ftp://x/y\n", ":4:", "sinks[0].url"},
		{"webhook bad header", "sinks:\n  - name: a\n    type: webhook\n    url: https://x/y\n    signature_header: \"X Sig\"\n", ":5:", "sinks[0].signature_header"},
		{"file too small", "sinks:\n  - name: a\n    type: file\n    path: /tmp/a\n    max_size: 100\n", ":5:", "sinks[0].max_size"},
		{"bad retry", "sinks:\n  - name: a\n    type: file\n    path: /tmp/a\n    retry_min: 10s\n    retry_max: 1s\n", ":5:", "sinks[0].retry_min"},
		{"bad queue", "sinks:\n  - name: a\n    type: file\n    path: /tmp/a\n    queue: -1\n", ":5:", "sinks[0].queue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msg := loadInvalid(t, tt.body); !strings.Contains(msg, tt.wantLine) || !strings.Contains(msg, tt.wantField) {
				t.Errorf("error %q: want line %q and field %q", msg, tt.wantLine, tt.wantField)
			}
		})
	}
}

func TestSinksDefaults(t *testing.T) {
	cfg, err := Load(writeFile(t, `sinks:
  - name: siem
    type: syslog
    address: tcp://siem.example.net:601
  - name: billing
    type: webhook
    url: https://billing.example.net/hook
    secret: hunter2-but-longer
    streams: [records]
  - name: archive
    type: file
    path: /var/log/portcullis/records.jsonl
    keep: 0
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, w, f := cfg.Sinks[0], cfg.Sinks[1], cfg.Sinks[2]
	if !s.Ships("records") || !s.Ships("events") || s.FacilityCode() != 16 || s.MaxMessageSize != 2048 ||
		s.Queue != 10000 || s.Batch != 100 || s.RetryMin.D().Seconds() != 1 || s.RetryMax.D().Seconds() != 30 {
		t.Fatalf("syslog defaults: %+v", s)
	}
	if n, a := s.SyslogAddr(); n != "tcp" || a != "siem.example.net:601" {
		t.Fatalf("syslog address %q %q", n, a)
	}
	if w.Ships("events") || w.SignatureHeader != "X-Portcullis-Signature" {
		t.Fatalf("webhook: %+v", w)
	}
	if f.MaxSize != 100<<20 || f.Keep == nil || *f.Keep != 0 {
		t.Fatalf("file: %+v", f)
	}
}

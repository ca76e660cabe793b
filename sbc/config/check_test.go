package config

import (
	"strings"
	"testing"
)

// TestErrorsNameTheRealFault: every bad value is reported at its file, line and field, and the
// message names what is wrong (the port, not the address form; the address, not ParseAddr).
func TestErrorsNameTheRealFault(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string // all in the message
		not        string   // never in the message
	}{
		{"bad media address", "media:\n  bind: not-an-ip\n", []string{"portcullis.yaml:2:", "media.bind", `"not-an-ip"`, "IP address"}, "ParseAddr"},
		{"bad advertise", "media:\n  advertise: 10.0.0\n", []string{":2:", "media.advertise", "IP address"}, "ParseAddr"},
		{"advertise6 not IPv6", "media:\n  bind: \"::\"\n  advertise6: 192.0.2.1\n", []string{":3:", "media.advertise6", "IPv6"}, ""},
		{"advertise6 on an IPv4 relay", "media:\n  bind: 0.0.0.0\n  advertise6: 2001:db8::1\n", []string{":3:", "media.advertise6", "media.bind"}, ""},
		{"bad allow_peers", "turn:\n  allow_peers: [10.0.0.0/33]\n", []string{":2:", "turn.allow_peers[0]", "CIDR"}, "ParsePrefix"},
		{"port out of range", "sip:\n  listen: [udp://0.0.0.0:70000]\n", []string{":2:", "sip.listen[0]", "port 70000", "1-65535"}, "literal IP"},
		{"port zero", "sip:\n  listen: [udp://0.0.0.0:0]\n", []string{":2:", "sip.listen[0]", "port 0"}, "literal IP"},
		{"host name in listener", "sip:\n  listen: [udp://sbc.example.com:5060]\n", []string{":2:", "sip.listen[0]", "literal IP"}, ""},
		{"bad duration field", "calls:\n  ring_timeout: soon\n", []string{":2:", "calls.ring_timeout", "soon"}, ""},
		{"bad port range field", "media:\n  ports: 9-8\n", []string{":2:", "media.ports", "9-8"}, ""},
		{"wrong type field", "sip:\n  max_message_size: lots\n", []string{":2:", "sip.max_message_size", "lots"}, ""},
		{"short room password", "rooms:\n  - name: r1\n    password: x\n", []string{":3:", "rooms[0].password", "at least 8"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := loadInvalid(t, tt.body)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if tt.not != "" && strings.Contains(msg, tt.not) {
				t.Errorf("error %q blames %q", msg, tt.not)
			}
		})
	}
	// From the environment: the variable is the field.
	_, err := Load("", []string{"PORTCULLIS_MEDIA_BIND=not-an-ip"})
	if err == nil || !strings.Contains(err.Error(), "PORTCULLIS_MEDIA_BIND") || strings.Contains(err.Error(), "ParseAddr") {
		t.Fatalf("env error %v", err)
	}
}

// TestUnknownEnvironmentWarns: a misspelt PORTCULLIS_ variable is reported, with the name it
// probably meant; the tools' own variables are not.
func TestUnknownEnvironmentWarns(t *testing.T) {
	_, warns, err := Check("", []string{"PORTCULLIS_SIP_DOMAN=x.example", "PORTCULLIS_SPI_DOMAIN=y", "PORTCULLIS_TOKEN=t",
		"PORTCULLIS_API=http://127.0.0.1:8443", "PORTCULLIS_CI=1", "PORTCULLIS_SIP_DOMAIN=video.test", "PORTCULLIS_SIP_TLS_CERT="})
	if err != nil {
		t.Fatal(err)
	}
	got := joinWarnings(warns)
	for _, want := range []string{"PORTCULLIS_SIP_DOMAN: not a setting (did you mean PORTCULLIS_SIP_DOMAIN?)",
		"PORTCULLIS_SPI_DOMAIN: not a setting (did you mean PORTCULLIS_SIP_DOMAIN?)"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings %q lack %q", got, want)
		}
	}
	if len(warns) != 2 {
		t.Errorf("want 2 warnings, got %q", got)
	}
}

// TestExampleValuesWarn: documentation addresses (RFC 5737, RFC 3849) and placeholder passwords
// load, but check names each at its line.
func TestExampleValuesWarn(t *testing.T) {
	body := `sip:
  advertise: 2001:db8::10
media:
  advertise: 203.0.113.10
guard:
  deny: [192.0.2.0/24, 10.9.0.0/16]
cluster:
  join: [198.51.100.1:7000]
rooms:
  - name: boardroom
    password: change-me-boardroom
    allow: ["198.51.100.0/24"]
  - name: lobby
    password: password
  - name: office
    password: Kq7-vLm2-x9Pz
`
	_, warns, err := Check(writeFile(t, body), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := joinWarnings(warns)
	for _, want := range []string{
		"portcullis.yaml:2: sip.advertise: 2001:db8::10 is a documentation address (RFC 3849)",
		"portcullis.yaml:4: media.advertise: 203.0.113.10 is a documentation address (RFC 5737)",
		"portcullis.yaml:6: guard.deny[0]: 192.0.2.0/24 is a documentation address (RFC 5737)",
		"portcullis.yaml:8: cluster.join[0]: 198.51.100.1:7000 is a documentation address",
		"portcullis.yaml:11: rooms[0].password: a placeholder password",
		"portcullis.yaml:12: rooms[0].allow[0]",
		"portcullis.yaml:14: rooms[1].password: a placeholder password",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "10.9.0.0") || strings.Contains(got, "rooms[2]") {
		t.Errorf("a real value warned:\n%s", got)
	}
	if strings.Contains(got, "change-me-boardroom") {
		t.Errorf("a password is printed:\n%s", got)
	}
}

// TestShippedConfigsAreNotLive: the files an operator copies (the minimal install config and
// the annotated reference) hold no example address and no placeholder password that would run
// live; the reference still documents every key.
func TestShippedConfigsAreNotLive(t *testing.T) {
	for _, f := range []string{"../../deploy/portcullis.yaml", "../../deploy/portcullis-minimal.yaml"} {
		_, warns, err := Check(f, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(warns) > 0 {
			t.Errorf("%s:\n%s", f, joinWarnings(warns))
		}
	}
}

func joinWarnings(ws []Warning) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.String() + "\n")
	}
	return b.String()
}

// TestProductDomainWarns: a sip.domain that names the product (the old default, set explicitly)
// is a scanner's fingerprint in every challenge: check says so; the shipped default sets none.
func TestProductDomainWarns(t *testing.T) {
	_, warns, err := Check(writeFile(t, "sip:\n  domain: portcullis.local\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := joinWarnings(warns); !strings.Contains(got, `portcullis.yaml:2: sip.domain: "portcullis.local" names the product`) {
		t.Errorf("no warning for the product's domain:\n%s", got)
	}
	if d := Default().SIP.Domain; d != "" {
		t.Errorf("default sip.domain %q: the cluster records a neutral one", d)
	}
	for _, tt := range []struct {
		in   string
		want bool
	}{{"video.example.com", true}, {"3f9a2c71be04", true}, {"198.51.100.7", true}, {"", false},
		{"a b", false}, {"2001:db8::1", false}, {"x\"y", false}, {"ro@m", false}, {"tab\t", false}} {
		if got := ValidDomain(tt.in); got != tt.want {
			t.Errorf("ValidDomain(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

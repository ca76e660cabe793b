package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadInvalid loads body, which must be refused as invalid, and returns the error's text.
func loadInvalid(t *testing.T, body string) string {
	t.Helper()
	_, err := Load(writeFile(t, body), nil)
	if err == nil {
		t.Fatal("want an error")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v does not wrap ErrInvalid", err)
	}
	return err.Error()
}

func TestDefaultsValid(t *testing.T) {
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.SIP.Listen[0].String() != "udp://0.0.0.0:5060" || cfg.Node.DataDir != "./data" {
		t.Fatalf("unexpected defaults: %+v", cfg.SIP.Listen)
	}
}

func TestExampleFileLoads(t *testing.T) {
	// The annotated reference is the defaults, written out: its examples are all in comments.
	cfg, err := Load("../../deploy/portcullis.yaml", nil)
	if err != nil {
		t.Fatalf("deploy/portcullis.yaml: %v", err)
	}
	def := Default()
	if cfg.Node.ID != def.Node.ID || cfg.SIP.Domain != def.SIP.Domain || cfg.Media.Advertise != def.Media.Advertise ||
		len(cfg.Guard.Deny) != 0 || len(cfg.Rooms) != 0 || !reflect.DeepEqual(cfg.SIP.Listen, def.SIP.Listen) {
		t.Fatalf("the reference sets live values: node.id %q, sip.domain %q, media.advertise %v, deny %v, %d rooms",
			cfg.Node.ID, cfg.SIP.Domain, cfg.Media.Advertise, cfg.Guard.Deny, len(cfg.Rooms))
	}
	min, err := Load("../../deploy/portcullis-minimal.yaml", nil)
	if err != nil {
		t.Fatalf("deploy/portcullis-minimal.yaml: %v", err)
	}
	if min.Node.DataDir != "/var/lib/portcullis" || len(min.Rooms) != 0 {
		t.Fatalf("minimal config: %+v", min.Node)
	}
	// A room's plain password becomes HA1 over the domain.
	r := Room{Name: "boardroom", Password: "Kq7-vLm2-x9Pz", Inbound: "allowlist"}.StateRoom("video.example.com")
	if r.HA1MD5 != digest.HA1(digest.MD5, "boardroom", "video.example.com", "Kq7-vLm2-x9Pz") || r.Inbound != "allowlist" {
		t.Fatalf("room: %+v", r)
	}
}

func TestErrorsNameLineAndField(t *testing.T) {
	tests := []struct {
		name, body, wantLine, wantField string
	}{
		{"unknown key", "sip:\n  domain: a.example\n  listn: []\n", ":3:", "listn"},
		{"bad duration", "calls:\n  ring_timeout: soon\n", ":2:", "soon"},
		{"bad listener", "sip:\n  listen: [sctp://1.2.3.4:5060]\n", ":2:", "sctp"},
		{"bad port range", "media:\n  ports: 9-8\n", ":2:", "9-8"},
		{"wrong type", "sip:\n  max_message_size: lots\n", ":2:", "lots"},
		{"room without password", "rooms:\n  - name: r1\n", ":2:", "rooms[0].password"},
		{"bad inbound", "rooms:\n  - name: r1\n    password: x\n    inbound: maybe\n", ":4:", "rooms[0].inbound"},
		{"duplicate room", "rooms:\n  - {name: r1, password: x}\n  - {name: r1, password: y}\n", ":3:", "declared twice"},
		{"public admin without tls", "admin:\n  listen: 0.0.0.0:8443\n", ":2:", "admin.listen"},
		{"tls listener without cert", "sip:\n  listen: [tls://127.0.0.1:5061]\n", "", "sip.tls"},
		{"no connection cap", "sip:\n  domain: a.example\n  max_conns: 0\n", ":3:", "sip.max_conns"},
		{"no /64 cap", "sip:\n  max_conns_per_prefix: 0\n", ":2:", "sip.max_conns_per_prefix"},
		{"turn without udp", "turn:\n  listen: [tcp://127.0.0.1:3478]\n", ":2:", "turn.listen"},
		{"no media streams", "media:\n  drain: 5s\n  max_streams: 0\n", ":3:", "media.max_streams"},
		{"unanswered cap below a stream", "media:\n  max_unanswered_ports: 2\n", ":2:", "media.max_unanswered_ports"},
		{"fastpath neither auto nor off", "media:\n  ports: 20000-20099\n  fastpath: kernel\n", ":3:", "media.fastpath"},
		{"bad media allow_peers", "media:\n  allow_peers: [10.0.0.0/99]\n", ":2:", "10.0.0.0/99"},
		{"node lost too soon", "cluster:\n  bind: 127.0.0.1:7000\n  node_lost_after: 100ms\n", ":3:", "cluster.node_lost_after"},
		{"heartbeat too short", "cluster:\n  bind: 127.0.0.1:7000\n  heartbeat_timeout: 5ms\n", ":3:", "cluster.heartbeat_timeout"},
		{"election below heartbeat", "cluster:\n  heartbeat_timeout: 1s\n  election_timeout: 500ms\n", ":3:", "cluster.election_timeout"},
		{"lease above heartbeat", "cluster:\n  leader_lease_timeout: 600ms\n", ":2:", "cluster.leader_lease_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := loadInvalid(t, tt.body)
			if !strings.Contains(msg, tt.wantLine) || !strings.Contains(msg, tt.wantField) {
				t.Errorf("error %q: want line %q and field %q", msg, tt.wantLine, tt.wantField)
			}
		})
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	cfg, err := Load("", []string{
		"PORTCULLIS_SIP_DOMAIN=env.example", "PORTCULLIS_CLUSTER_JOIN=10.0.0.1:7000, 10.0.0.2:7000",
		"PORTCULLIS_CALLS_RING_TIMEOUT=20s", "PORTCULLIS_SIP_LISTEN=udp://127.0.0.1:5070",
		"PORTCULLIS_ADMIN_TOKEN=secret", "PORTCULLIS_GUARD_STEALTH=false", "HOME=/root",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SIP.Domain != "env.example" || len(cfg.Cluster.Join) != 2 || cfg.Calls.RingTimeout.D().Seconds() != 20 ||
		cfg.SIP.Listen[0].Addr.Port() != 5070 || cfg.Admin.Token != "secret" || cfg.Guard.StealthOn() {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	_, err = Load("", []string{"PORTCULLIS_CALLS_RING_TIMEOUT=later"})
	if err == nil || !strings.Contains(err.Error(), "PORTCULLIS_CALLS_RING_TIMEOUT") {
		t.Fatalf("bad env value: %v", err)
	}
}

package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

const composeFile = "compose/docker-compose.yml"

// composeDoc is the compose file decoded (anchors and merge keys resolved).
type composeDoc struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]map[string]any `yaml:"networks"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Restart     string            `yaml:"restart"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	Hostname    string            `yaml:"hostname"`
	DependsOn   []string          `yaml:"depends_on"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Networks    []string          `yaml:"networks"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func loadCompose(t testing.TB) composeDoc {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc composeDoc
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return doc
}

var interpolation = regexp.MustCompile(`\$\{([A-Z_]+)(:-([^}]*))?\}`)

// interpolate replaces ${VAR:-default} as compose does with an empty environment.
func interpolate(s string) string {
	return interpolation.ReplaceAllString(s, "$3")
}

// composeEnv is a service's environment as KEY=VALUE, interpolated with defaults.
func composeEnv(t testing.TB, service string) []string {
	t.Helper()
	svc, ok := loadCompose(t).Services[service]
	if !ok {
		t.Fatalf("%s: no service %s", composeFile, service)
	}
	var env []string
	for k, v := range svc.Environment {
		env = append(env, k+"="+interpolate(v))
	}
	sort.Strings(env)
	return env
}

// TestComposeFile checks the fields that make the compose file a working 3-node cluster, and
// that each node's configuration (the shared file plus its environment) validates.
func TestComposeFile(t *testing.T) {
	doc := loadCompose(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range doc.Services {
			if !yield(n) {
				return
			}
		}
	})
	if !slices.Equal(names, []string{"node1", "node2", "node3"}) {
		t.Fatalf("services %v, want node1..node3", names)
	}
	if d := doc.Networks["cluster"]["driver"]; d != "bridge" {
		t.Errorf("network cluster: driver %v, want a private bridge", d)
	}
	published := map[string]string{}
	for _, name := range names {
		s := doc.Services[name]
		t.Run(name, func(t *testing.T) {
			if !slices.Equal(s.Networks, []string{"cluster"}) {
				t.Errorf("networks %v, want [cluster]", s.Networks)
			}
			if s.Restart != "on-failure" || !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) {
				t.Errorf("restart %q read_only %v cap_drop %v", s.Restart, s.ReadOnly, s.CapDrop)
			}
			if !slices.Contains(s.Volumes, name+"-data:/data") {
				t.Errorf("volumes %v: no %s-data:/data", s.Volumes, name)
			}
			if _, ok := doc.Volumes[name+"-data"]; !ok {
				t.Errorf("volume %s-data not declared", name)
			}
			if len(s.Healthcheck.Test) < 3 || s.Healthcheck.Test[2] != "health" {
				t.Errorf("healthcheck %v: want [CMD portcullis health ...]", s.Healthcheck.Test)
			}
			if d, err := time.ParseDuration(s.StopGracePeriod); err != nil || d <= 30*time.Second {
				t.Errorf("stop_grace_period %q: must exceed the 30s drain", s.StopGracePeriod)
			}
			env := s.Environment
			if env["PORTCULLIS_NODE_ID"] != name || env["PORTCULLIS_CLUSTER_ADVERTISE"] != name+":7000" {
				t.Errorf("node id %q advertise %q", env["PORTCULLIS_NODE_ID"], env["PORTCULLIS_CLUSTER_ADVERTISE"])
			}
			join := env["PORTCULLIS_CLUSTER_JOIN"]
			if name == "node1" && join != "" || name != "node1" && join != "node1:7000" {
				t.Errorf("cluster join %q: node1 bootstraps, the others join node1:7000", join)
			}
			if name != "node1" && (!slices.Contains(s.Volumes, "node1-data:/node1:ro") || env["PORTCULLIS_CLUSTER_CA"] != "/node1/tls/ca.crt") {
				t.Errorf("%s must use node1's cluster certificates read-only: volumes %v", name, s.Volumes)
			}
			for _, p := range s.Ports {
				hostPorts, _, _ := strings.Cut(p, ":")
				for _, hp := range expandRange(t, hostPorts+"/"+protoOf(p)) {
					if other, dup := published[hp]; dup {
						t.Errorf("host port %s published by %s and %s", hp, other, name)
					}
					published[hp] = name
				}
			}
			// The node's effective configuration: the shared file, then its environment.
			cfgPath := ""
			for _, v := range s.Volumes {
				if src, dst, _ := strings.Cut(v, ":"); strings.HasPrefix(dst, "/etc/portcullis/portcullis.yaml") {
					cfgPath = filepath.Join("compose", src)
				}
			}
			cfg, err := config.Load(cfgPath, composeEnv(t, name))
			if err != nil {
				t.Fatalf("config %s with %s's environment: %v", cfgPath, name, err)
			}
			if cfg.Node.DataDir != "/data" || len(cfg.Rooms) == 0 {
				t.Errorf("data_dir %q rooms %d", cfg.Node.DataDir, len(cfg.Rooms))
			}
			for _, l := range cfg.SIP.Listen {
				want := fmt.Sprintf("%d:%d/%s", l.Addr.Port(), l.Addr.Port(), l.Transport)
				if !slices.Contains(s.Ports, want) {
					t.Errorf("SIP listener %s is not published as %q (ports %v)", l, want, s.Ports)
				}
			}
		})
	}
	if bin, err := exec.LookPath("docker-compose"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, bin, "-f", composeFile, "config", "-q").CombinedOutput(); err != nil {
			t.Errorf("docker-compose config: %v\n%s", err, out)
		}
	} else {
		t.Log("docker-compose not installed: `docker-compose config` not run")
	}
}

func protoOf(port string) string {
	if _, proto, ok := strings.Cut(port, "/"); ok {
		return proto
	}
	return "tcp"
}

// expandRange turns "20000-20019/udp" into one entry per port ("5060/udp" into itself).
func expandRange(t *testing.T, p string) []string {
	ports, proto, _ := strings.Cut(p, "/")
	lo, hi, ok := strings.Cut(ports, "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || b < a {
		t.Errorf("bad port range %q", p)
		return nil
	}
	var out []string
	for i := a; i <= b; i++ {
		out = append(out, strconv.Itoa(i)+"/"+proto)
	}
	return out
}

// composeCLI returns the compose command (docker compose, else docker-compose), or skips loudly
// (fails when PORTCULLIS_CI is set).
func composeCLI(t *testing.T, dockerBin string) []string {
	t.Helper()
	if exec.Command(dockerBin, "compose", "version").Run() == nil {
		return []string{dockerBin, "compose"}
	}
	return []string{testpeer.Require(t, "docker-compose")}
}

package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The cluster test's SIP domain and room (node1's config file declares the room; the other nodes
// have no config file and learn the room through Raft).
const (
	testDomain   = "video.test"
	testRoom     = "boardroom"
	testPassword = "s3cret-board"
)

// TestDocker builds the image from locally made base images, then runs it: first alone with no
// configuration, then as a 3-node cluster on a private network. Skips loudly without a Docker
// engine (fails in CI). PORTCULLIS_DEPLOY_KEEP=1 leaves containers and images for inspection.
func TestDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("container test skipped in -short mode")
	}
	d := requireDocker(t)
	start := time.Now()
	image := d.buildImage()
	t.Run("single node without config", func(t *testing.T) { testSingleNode(d.forT(t), image) })
	t.Run("example configs pass check in the image", func(t *testing.T) { testConfigsInImage(d.forT(t), image) })
	t.Run("healthcheck follows a mounted config", func(t *testing.T) { testHealthWithConfig(d.forT(t), image) })
	t.Run("three-node cluster", func(t *testing.T) { testCluster(d.forT(t), image) })
	t.Run("compose cluster", func(t *testing.T) { testCompose(d.forT(t), image) })
	t.Logf("container test total %s", time.Since(start).Round(time.Second))
}

// forT is d for a subtest (Fatal must be called from the test's own goroutine).
func (d *docker) forT(t *testing.T) *docker { return &docker{t: t, bin: d.bin, id: d.id} }

// testSingleNode: `docker run IMAGE` with nothing else is a working node, as UID 65532.
func testSingleNode(d *docker, image string) {
	t := d.t
	c := d.start("single", image)
	addr := c.sipAddr("")
	ua := newSipUA(t, "probe", hostAddrFor(t, addr.IP))
	took := waitSIP(t, ua, addr, 60*time.Second)
	t.Logf("single node answers OPTIONS at %s %s after start", addr, took.Round(time.Millisecond))

	// The registrar runs: a REGISTER is challenged (there are no rooms, so that is all it can do).
	// No sip.domain: the node's IP is a domain it serves, and the realm is the recorded one.
	host := addr.IP.String()
	res, err := ua.do(addr, sipReq{method: "REGISTER", uri: "sip:" + host, hdrs: [][2]string{
		{"From", "<sip:nobody@" + host + ">;tag=" + token(8)}, {"To", "<sip:nobody@" + host + ">"},
		{"Call-ID", token(16)}, {"CSeq", "1 REGISTER"},
		{"Contact", fmt.Sprintf("<sip:nobody@%s:%d>", ua.host, ua.port)}, {"Expires", "300"},
	}}, 5*time.Second)
	if err != nil || res.status != 401 || res.get("WWW-Authenticate") == "" {
		t.Fatalf("REGISTER: want a 401 digest challenge, got %v %v", res, err)
	}
	if strings.Contains(strings.ToLower(res.get("WWW-Authenticate")), "portcullis") {
		t.Errorf("the default realm names the product: %s", res.get("WWW-Authenticate"))
	}

	// Non-root: the configured user, the process's UID, and the owner of what it wrote in /data.
	if u := d.must("inspect", "-f", "{{.Config.User}}", c.name); u != "65532:65532" {
		t.Errorf("image USER %q, want 65532:65532", u)
	}
	top := d.must("top", c.name, "-eo", "pid,uid,args")
	procs := 0
	for _, line := range strings.Split(top, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(line, "portcullis") {
			procs++
			if f[1] != "65532" {
				t.Errorf("process runs as UID %s: %s", f[1], line)
			}
		}
	}
	if procs == 0 {
		t.Errorf("no portcullis process in docker top:\n%s", top)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp := exec.CommandContext(ctx, d.bin, "cp", c.name+":/data", "-")
	var tarball bytes.Buffer
	cp.Stdout = &tarball
	if err := cp.Run(); err != nil {
		t.Fatalf("docker cp /data: %v", err)
	}
	owners, err := tarOwners(&tarball)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"data/raft/raft.db", "data/tls/ca.crt", "data/tls/node.key"} {
		uid, ok := owners[want]
		if !ok || uid != 65532 {
			t.Errorf("/%s: owner %d (present %v), want 65532; /data holds %v", want, uid, ok, owners)
		}
	}
	t.Logf("runs as UID 65532; /data written by it: %d entries", len(owners))

	// The HEALTHCHECK runs `portcullis health`.
	if help := d.must("run", "--rm", image, "help"); !strings.Contains(help, "health") {
		t.Logf("!!! `portcullis health` is not in this binary yet: the image's HEALTHCHECK reports unhealthy; health NOT checked !!!")
		return
	}
	took = eventually(t, "container healthy", 60*time.Second, time.Second, func() error {
		if s := d.must("inspect", "-f", "{{.State.Health.Status}}", c.name); s != "healthy" {
			return fmt.Errorf("health status %q", s)
		}
		return nil
	})
	t.Logf("HEALTHCHECK healthy %s after the node answered", took.Round(time.Second))
}

// testHealthWithConfig: with a mounted config that moves SIP off 5060 (`serve --config FILE`),
// the image's HEALTHCHECK (`portcullis health`, no flags) probes the port the node listens on
// and reports healthy.
func testHealthWithConfig(d *docker, image string) {
	t := d.t
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cfg := filepath.Join(dir, "portcullis.yaml")
	mustWrite(t, cfg, []byte("sip:\n  listen: [udp://0.0.0.0:5070, tcp://0.0.0.0:5070]\nturn:\n  listen: []\n"), 0o644)
	c := d.start("health", "-v", cfg+":/etc/portcullis/portcullis.yaml:ro", image, "serve", "--config", "/etc/portcullis/portcullis.yaml")
	took := eventually(t, "container healthy", 90*time.Second, time.Second, func() error {
		if s := d.must("inspect", "-f", "{{.State.Health.Status}}", c.name); s != "healthy" {
			return fmt.Errorf("health status %q: %s", s, d.must("inspect", "-f", "{{range .State.Health.Log}}{{.Output}}{{end}}", c.name))
		}
		return nil
	})
	t.Logf("HEALTHCHECK healthy %s after start with SIP on 5070 from a mounted config", took.Round(time.Second))
}

// testConfigsInImage runs `portcullis check` in the image on the example configs that ship with
// the deployment files, with the environment the compose file gives.
func testConfigsInImage(d *docker, image string) {
	t := d.t
	root := repoRoot(t)
	for _, c := range []struct {
		file string
		env  []string
	}{
		{"deploy/portcullis.yaml", nil},
		{"deploy/compose/portcullis.yaml", composeEnv(t, "node2")},
	} {
		args := []string{"run", "--rm", "-v", filepath.Join(root, c.file) + ":/etc/portcullis/portcullis.yaml:ro"}
		for _, e := range c.env {
			args = append(args, "-e", e)
		}
		args = append(args, image, "check", "--config", "/etc/portcullis/portcullis.yaml")
		if out := d.must(args...); !strings.Contains(out, "config OK") {
			t.Errorf("%s: %s", c.file, out)
		}
	}
}

// testCluster: node1 bootstraps, node2 and node3 join with a join token; a room registers over
// SIP and the registrations replicate; the leader is killed and the rest keep serving; a node is
// cut off from the network and, back, converges.
func testCluster(d *docker, image string) {
	t := d.t
	start := time.Now()
	network := d.name("net")
	d.must("network", "create", "--label", d.label(), network)
	t.Cleanup(func() {
		if !keep() {
			d.quiet("network", "rm", network)
		}
	})
	gateway := d.must("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", network)
	if net.ParseIP(gateway) == nil {
		t.Fatalf("network %s has no gateway address (%q)", network, gateway)
	}
	// The room system: our UDP socket, seen by the nodes at the network's gateway address.
	room := newSipUA(t, "room", gateway)

	cfgDir := t.TempDir()
	os.Chmod(cfgDir, 0o755)
	cfg := filepath.Join(cfgDir, "node1.yaml")
	mustWrite(t, cfg, []byte(fmt.Sprintf("sip:\n  domain: %s\nrooms:\n  - name: %s\n    password: %s\n    inbound: open\n",
		testDomain, testRoom, testPassword)), 0o644)

	nodes := map[string]*container{}
	started := map[string]time.Time{}
	run := func(name string, extra ...string) *container {
		args := []string{"--hostname", name, "--network", network, "--network-alias", name,
			"-e", "PORTCULLIS_NODE_ID=" + name,
			"-e", "PORTCULLIS_SIP_DOMAIN=" + testDomain,
			"-e", "PORTCULLIS_CLUSTER_BIND=0.0.0.0:7000",
			"-e", "PORTCULLIS_CLUSTER_ADVERTISE=" + name + ":7000",
			"-e", "PORTCULLIS_LOG_FORMAT=json",
			"-e", "PORTCULLIS_NODE_DRAIN_TIMEOUT=2s",
			"-e", "PORTCULLIS_MEDIA_PORTS=20000-20199",
		}
		c := d.start(name, append(args, extra...)...)
		c.alias = name
		started[name] = time.Now()
		nodes[name] = c
		return c
	}
	addr := func(name string) *net.UDPAddr { return nodes[name].sipAddr(network) }

	run("node1", "-v", cfg+":/etc/portcullis/portcullis.yaml:ro", image, "serve", "--config", "/etc/portcullis/portcullis.yaml")
	took := waitSIP(t, room, addr("node1"), 60*time.Second)
	t.Logf("node1 bootstrapped and answers SIP after %s", took.Round(time.Millisecond))
	joinToken := d.must("exec", nodes["node1"].name, "portcullis", "cluster", "join-token", "--data-dir", "/data", "--ttl", "15m")
	if !strings.HasPrefix(joinToken, "pcj1_") {
		t.Fatalf("join token %q", joinToken)
	}
	for _, n := range []string{"node2", "node3"} {
		run(n, "-e", "PORTCULLIS_CLUSTER_JOIN_TOKEN="+joinToken, image)
	}
	for _, n := range []string{"node2", "node3"} {
		waitSIP(t, room, addr(n), 90*time.Second)
		t.Logf("%s joined with the token and answers SIP %s after its start", n, time.Since(started[n]).Round(time.Millisecond))
	}
	members := 0
	for _, r := range nodes["node1"].records() {
		if r.Msg == "member added" {
			members++
		}
	}
	if members != 2 {
		t.Fatalf("node1 logged %d 'member added', want 2", members)
	}
	t.Logf("cluster of 3 up %s after the first container started", time.Since(start).Round(time.Millisecond))

	// Registration through node1, replicated: node2 and node3 list it, and node2 (which has no
	// config file) authenticates the room with the credentials it learnt through Raft.
	contactA := fmt.Sprintf("sip:%s-a@%s:%d", testRoom, gateway, room.port)
	contactB := fmt.Sprintf("sip:%s-b@%s:%d", testRoom, gateway, room.port)
	mustRegister(t, room, addr("node1"), contactA, 600)
	took = waitBindings(t, room, "node2", addr("node2"), []string{contactA}, nil)
	t.Logf("registration via node1 visible on node2 after %s", took.Round(time.Millisecond))
	mustRegister(t, room, addr("node2"), contactB, 600)
	waitBindings(t, room, "node3", addr("node3"), []string{contactA, contactB}, nil)
	t.Log("room authenticated by node2 (credentials replicated); both bindings listed by node3")

	// A call through a second node: node2 places it to the room registered on node1.
	placeCall(t, newSipUA(t, "caller", gateway), room, addr("node2"), testRoom, testDomain, 20000, 20199)

	// Kill the leader (SIGKILL: no drain, no leadership transfer): the rest keep serving.
	leader := waitLeader(t, nodes)
	d.must("kill", leader.name)
	t.Logf("killed the leader %s", leader.alias)
	var survivors []string
	for _, n := range []string{"node1", "node2", "node3"} {
		if nodes[n] != leader {
			survivors = append(survivors, n)
		}
	}
	contactC := fmt.Sprintf("sip:%s-c@%s:%d", testRoom, gateway, room.port)
	took = eventually(t, "REGISTER after the leader was killed", 30*time.Second, 200*time.Millisecond, func() error {
		return register(room, addr(survivors[0]), contactC, 600)
	})
	newLeader := waitLeader(t, nodes)
	t.Logf("REGISTER via %s accepted %s after the kill; new leader %s", survivors[0], took.Round(time.Millisecond), newLeader.alias)
	waitBindings(t, room, survivors[1], addr(survivors[1]), []string{contactA, contactB, contactC}, nil)

	// Bring it back: it resumes from its data volume and catches up.
	d.must("start", leader.name)
	took = waitSIP(t, room, addr(leader.alias), 60*time.Second)
	waitBindings(t, room, leader.alias, addr(leader.alias), []string{contactA, contactB, contactC}, nil)
	t.Logf("%s restarted, answers SIP after %s and has caught up", leader.alias, took.Round(time.Millisecond))

	// Partition a follower, change the state on the majority, heal, and check it converges.
	leader = waitLeader(t, nodes)
	var victim, other string
	for _, n := range []string{"node1", "node2", "node3"} {
		switch {
		case nodes[n] == leader:
		case victim == "":
			victim = n
		default:
			other = n
		}
	}
	cut := time.Now() // containers share the host's clock
	d.must("network", "disconnect", network, nodes[victim].name)
	// The partition is real once the victim stops hearing from the leader (or the leader fails
	// to reach the victim, whichever is logged first).
	var evidence string
	took = eventually(t, "the partition takes effect", 20*time.Second, 200*time.Millisecond, func() error {
		for _, l := range nodes[victim].linesSince(cut) {
			if strings.Contains(l, "heartbeat timeout reached") {
				evidence = victim + ": " + l
				return nil
			}
		}
		for _, l := range leader.linesSince(cut) {
			if strings.Contains(l, "failed to") && strings.Contains(l, victim) {
				evidence = leader.alias + ": " + l
				return nil
			}
		}
		return fmt.Errorf("neither %s nor %s logged a lost contact", victim, leader.alias)
	})
	t.Logf("partitioned %s (leader %s), in effect after %s: %s", victim, leader.alias,
		took.Round(time.Millisecond), tail(evidence, 200))
	contactD := fmt.Sprintf("sip:%s-d@%s:%d", testRoom, gateway, room.port)
	mustRegister(t, room, addr(other), contactD, 600)
	mustRegister(t, room, addr(leader.alias), contactA, 0) // unregister A
	want := []string{contactB, contactC, contactD}
	waitBindings(t, room, other, addr(other), want, []string{contactA})
	d.must("network", "connect", "--alias", victim, network, nodes[victim].name)
	took = waitBindings(t, room, victim, addr(victim), want, []string{contactA})
	t.Logf("%s reconnected and converged (new binding present, removed one gone) after %s", victim, took.Round(time.Millisecond))
	t.Logf("cluster scenario took %s", time.Since(start).Round(time.Second))
}

// register registers contact (expires 0: removes it) through the node at addr; nil on 200.
func register(ua *sipUA, addr *net.UDPAddr, contact string, expires int) error {
	res, err := ua.register(addr, registration{room: testRoom, domain: testDomain, password: testPassword,
		contact: contact, expires: expires}, 6*time.Second)
	if err != nil {
		return err
	}
	if res.status != 200 {
		return fmt.Errorf("REGISTER via %s: %s", addr, res)
	}
	return nil
}

func mustRegister(t *testing.T, ua *sipUA, addr *net.UDPAddr, contact string, expires int) {
	t.Helper()
	if err := register(ua, addr, contact, expires); err != nil {
		t.Fatal(err)
	}
}

// waitBindings queries the room's bindings on one node (an authenticated REGISTER without
// Contact: the node answers from its local replica) until all of want and none of absent are
// listed.
func waitBindings(t *testing.T, ua *sipUA, node string, addr *net.UDPAddr, want, absent []string) time.Duration {
	t.Helper()
	return eventually(t, "bindings on "+node, 30*time.Second, 300*time.Millisecond, func() error {
		res, err := ua.register(addr, registration{room: testRoom, domain: testDomain, password: testPassword}, 4*time.Second)
		if err != nil {
			return err
		}
		if res.status != 200 {
			return fmt.Errorf("query: %s", res)
		}
		got := contacts(res)
		for _, w := range want {
			if !slices.Contains(got, w) {
				return fmt.Errorf("%s lists %q, missing %s", node, got, w)
			}
		}
		for _, a := range absent {
			if slices.Contains(got, a) {
				return fmt.Errorf("%s still lists %s", node, a)
			}
		}
		return nil
	})
}

// waitLeader returns the running node that says it leads (the latest to say so).
func waitLeader(t *testing.T, nodes map[string]*container) *container {
	t.Helper()
	var leader *container
	eventually(t, "a leader", 30*time.Second, 200*time.Millisecond, func() error {
		var best time.Time
		leader = nil
		for _, c := range nodes {
			if since, ok := c.leadsSince(); ok && c.running() && since.After(best) {
				best, leader = since, c
			}
		}
		if leader == nil {
			return fmt.Errorf("no running node says it leads")
		}
		return nil
	})
	return leader
}

// hostAddrFor returns our address on the route to ip (what a container sees as our address).
func hostAddrFor(t testing.TB, ip net.IP) string {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: ip, Port: 5060})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

// testCompose brings up deploy/compose/docker-compose.yml with the test image and checks that it
// is a working cluster: every node answers SIP, a room registered through node1 is listed by
// node3. The file runs as shipped but for its published ports, which are dropped: the host's
// 5060 may be taken (other tests, a local SBC) and the test reaches the nodes on their network.
func testCompose(d *docker, image string) {
	t := d.t
	cli := composeCLI(t, d.bin)
	root := repoRoot(t)
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for k := range doc {
		if strings.HasPrefix(k, "x-") {
			delete(doc, k)
		}
	}
	for _, svc := range doc["services"].(map[string]any) {
		s := svc.(map[string]any)
		delete(s, "ports")
		delete(s, "build")
		vols := s["volumes"].([]any)
		for i, v := range vols {
			vols[i] = strings.Replace(v.(string), "./portcullis.yaml", filepath.Join(root, "deploy/compose/portcullis.yaml"), 1)
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	mustWrite(t, file, out, 0o644)
	project := "pcd" + d.id
	compose := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli[0], append(append(cli[1:], "-p", project, "-f", file), args...)...)
		cmd.Env = append(os.Environ(), "PORTCULLIS_IMAGE="+image)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := compose(30*time.Second, "logs", "--no-color", "--tail", "30")
			t.Logf("--- compose logs:\n%s", logs)
		}
		if keep() {
			return
		}
		if out, err := compose(2*time.Minute, "down", "-v", "--remove-orphans"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	start := time.Now()
	if out, err := compose(3*time.Minute, "up", "-d", "--no-build"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	sipPort := map[string]int{"node1": 5060, "node2": 5070, "node3": 5080}
	addrs := map[string]*net.UDPAddr{}
	var room *sipUA
	for _, n := range []string{"node1", "node2", "node3"} {
		id, err := compose(time.Minute, "ps", "-q", n)
		if err != nil || strings.TrimSpace(id) == "" {
			t.Fatalf("compose ps %s: %v %s", n, err, id)
		}
		ip := d.must("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", strings.TrimSpace(id))
		addrs[n] = &net.UDPAddr{IP: net.ParseIP(ip), Port: sipPort[n]}
		if room == nil {
			room = newSipUA(t, "compose-room", hostAddrFor(t, addrs[n].IP))
		}
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		waitSIP(t, room, addrs[n], 90*time.Second)
	}
	t.Logf("compose cluster answers SIP on all 3 nodes %s after up", time.Since(start).Round(time.Millisecond))
	reg := registration{room: "boardroom", domain: "video.example.com", password: "change-me-boardroom",
		contact: fmt.Sprintf("sip:boardroom@%s:%d", room.host, room.port), expires: 600}
	eventually(t, "REGISTER via node1", 30*time.Second, 300*time.Millisecond, func() error {
		res, err := room.register(addrs["node1"], reg, 5*time.Second)
		if err == nil && res.status != 200 {
			err = fmt.Errorf("REGISTER: %s", res)
		}
		return err
	})
	query := reg
	query.contact = ""
	took := eventually(t, "binding listed by node3", 30*time.Second, 300*time.Millisecond, func() error {
		res, err := room.register(addrs["node3"], query, 5*time.Second)
		if err != nil {
			return err
		}
		if !slices.Contains(contacts(res), reg.contact) {
			return fmt.Errorf("node3 answers %s listing %q", res, contacts(res))
		}
		return nil
	})
	t.Logf("room registered via node1, listed by node3 after %s", took.Round(time.Millisecond))

	if help := d.must("run", "--rm", image, "help"); !strings.Contains(help, "health") {
		t.Logf("!!! `portcullis health` is not in this binary yet: compose healthchecks NOT checked !!!")
		return
	}
	took = eventually(t, "compose healthchecks", 90*time.Second, time.Second, func() error {
		for _, n := range []string{"node1", "node2", "node3"} {
			id, _ := compose(time.Minute, "ps", "-q", n)
			if s := d.must("inspect", "-f", "{{.State.Health.Status}}", strings.TrimSpace(id)); s != "healthy" {
				return fmt.Errorf("%s: %s", n, s)
			}
		}
		return nil
	})
	t.Logf("compose healthchecks: all healthy %s after the cluster served", took.Round(time.Second))
}

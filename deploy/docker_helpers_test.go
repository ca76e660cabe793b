package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
)

// docker drives the docker CLI for one test: everything it creates carries the label
// portcullis-deploy-test=<id> and is removed by the test's cleanups.
type docker struct {
	t   *testing.T
	bin string
	id  string // unique per test run: names and labels
}

// requireDocker returns a docker client, or skips loudly (fails when PORTCULLIS_CI is set) when
// the CLI is missing or no engine answers.
func requireDocker(t *testing.T) *docker {
	t.Helper()
	bin := testpeer.Require(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("!!! DOCKER ENGINE NOT REACHABLE (%v: %s) — container test NOT run !!!", err, bytes.TrimSpace(out))
		if os.Getenv("PORTCULLIS_CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return &docker{t: t, bin: bin, id: token(8)}
}

// run runs a docker command and returns its trimmed stdout; stderr goes into the error.
func (d *docker) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err,
			strings.TrimSpace(tail(stderr.String(), 3000)))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// must runs a docker command with a 2-minute limit and fails the test on error.
func (d *docker) must(args ...string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := d.run(ctx, args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// quiet runs a docker command for a cleanup: errors are logged, not fatal.
func (d *docker) quiet(args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.run(ctx, args...); err != nil {
		d.t.Logf("cleanup: %v", err)
	}
}

// keep reports whether PORTCULLIS_DEPLOY_KEEP asks to leave containers and images for inspection.
func keep() bool { return os.Getenv("PORTCULLIS_DEPLOY_KEEP") != "" }

func (d *docker) name(suffix string) string { return "pcd-" + d.id + "-" + suffix }

func (d *docker) label() string { return "portcullis-deploy-test=" + d.id }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// repoRoot is the module root (the test runs in deploy/).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod in %s: %v", root, err)
	}
	return root
}

// buildImage makes the local Go base image (deploy/docker/make-base-images.sh), copies the
// working tree with its modules vendored into a build context (the builder has no network), builds
// the Dockerfile from it and returns the image tag. Cleanups remove the image and the build
// stage's layers.
func (d *docker) buildImage() string {
	t := d.t
	t.Helper()
	root := repoRoot(t)
	start := time.Now()
	// No wall-clock limit of its own: a cold build (the Go base image, go mod vendor, docker
	// build compiling every package) on a loaded 2-core machine takes what it takes; only the
	// test binary's -timeout bounds it.
	ctx, cancel := testContext(t)
	defer cancel()

	cmd := exec.CommandContext(ctx, "sh", filepath.Join(root, "deploy/docker/make-base-images.sh"))
	cmd.Stderr = io.Discard
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make-base-images.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	goImage := lines[len(lines)-1]
	t.Logf("base image %s ready after %s", goImage, time.Since(start).Round(time.Millisecond))

	bctx := t.TempDir()
	if err := copyTree(root, bctx); err != nil {
		t.Fatal(err)
	}
	vend := exec.CommandContext(ctx, "go", "mod", "vendor")
	vend.Dir = bctx
	if out, err := vend.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	tag := "portcullis-deploy-test:" + d.id
	t.Cleanup(func() {
		if keep() {
			t.Logf("PORTCULLIS_DEPLOY_KEEP: leaving image %s", tag)
			return
		}
		d.quiet("rmi", "-f", tag)
		d.quiet("image", "prune", "-f", "--filter", "label=org.portcullis-sbc.stage=build")
	})
	buildStart := time.Now()
	if _, err := d.run(ctx, "build", "--force-rm", "--build-arg", "GO_IMAGE="+goImage,
		"--build-arg", "VERSION=deploy-test-"+d.id, "--label", d.label(), "-t", tag, bctx); err != nil {
		t.Fatal(err)
	}
	size, _ := strconv.ParseInt(d.must("image", "inspect", "-f", "{{.Size}}", tag), 10, 64)
	t.Logf("image %s built in %s (docker build alone %s): size %.1f MB (%d bytes)", tag,
		time.Since(start).Round(time.Second), time.Since(buildStart).Round(time.Second), float64(size)/1e6, size)
	return tag
}

// testContext is canceled at the test's own deadline (go test -timeout), shortly before the
// binary would panic, so a hung build ends with its output; without a deadline it is never
// canceled. Builds use it instead of a fixed limit.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	if dl, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), dl.Add(-30*time.Second))
	}
	return context.WithCancel(context.Background())
}

// copyTree copies the working tree at src to dst: everything but .git, data directories and
// build outputs (the Dockerfile's .dockerignore trims the rest).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if e.IsDir() && (e.Name() == ".git" || e.Name() == "data" || e.Name() == ".artifacts" || e.Name() == "vendor") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(target, 0o755)
		case e.Type().IsRegular():
			if strings.HasSuffix(e.Name(), ".test") || (rel == "portcullis") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
		return nil
	})
}

// container is one running container of the test.
type container struct {
	d    *docker
	name string
	// alias is its name on the test network ("" on the default bridge).
	alias string
}

// start runs a container detached and registers its removal (with its anonymous volumes).
func (d *docker) start(name string, args ...string) *container {
	d.t.Helper()
	full := d.name(name)
	runArgs := append([]string{"run", "-d", "--name", full, "--label", d.label()}, args...)
	d.t.Cleanup(func() {
		if d.t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			logs, _ := exec.CommandContext(ctx, d.bin, "logs", "--tail", "60", full).CombinedOutput()
			cancel()
			d.t.Logf("--- last log lines of %s:\n%s", full, logs)
		}
		if keep() {
			return
		}
		d.quiet("rm", "-f", "-v", full)
	})
	d.must(runArgs...)
	return &container{d: d, name: full}
}

// ip returns the container's address on network ("" for the default bridge), waiting for one.
func (c *container) ip(network string) string {
	c.d.t.Helper()
	format := "{{.NetworkSettings.IPAddress}}"
	if network != "" {
		format = `{{with index .NetworkSettings.Networks "` + network + `"}}{{.IPAddress}}{{end}}`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ip := c.d.must("inspect", "-f", format, c.name)
		if ip != "" && ip != "<no value>" {
			return ip
		}
		if time.Now().After(deadline) {
			c.d.t.Fatalf("%s has no address on network %q", c.name, network)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logs returns the container's output (the node logs to stderr).
func (c *container) logs() string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, c.d.bin, "logs", c.name).CombinedOutput()
	return string(out)
}

// logRecord is one JSON log line of the node (log.format json).
type logRecord struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
	ID   string    `json:"id"`
}

func (c *container) records() []logRecord {
	var recs []logRecord
	sc := bufio.NewScanner(strings.NewReader(c.logs()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r logRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Msg != "" {
			recs = append(recs, r)
		}
	}
	return recs
}

// linesSince returns the raw log lines stamped after since.
func (c *container) linesSince(since time.Time) []string {
	var out []string
	for _, line := range strings.Split(c.logs(), "\n") {
		var r logRecord
		if json.Unmarshal([]byte(line), &r) == nil && r.Time.After(since) {
			out = append(out, line)
		}
	}
	return out
}

// leadsSince returns when the node last said it became leader, if it has not said since that it
// lost leadership.
func (c *container) leadsSince() (time.Time, bool) {
	var since time.Time
	leads := false
	for _, r := range c.records() {
		switch r.Msg {
		case "this node is the leader":
			since, leads = r.Time, true
		case "this node is no longer the leader":
			leads = false
		}
	}
	return since, leads
}

// running reports whether the container is running.
func (c *container) running() bool {
	out, err := c.d.run(context.Background(), "inspect", "-f", "{{.State.Running}}", c.name)
	return err == nil && out == "true"
}

// sipAddr is the container's SIP UDP address on network.
func (c *container) sipAddr(network string) *net.UDPAddr {
	return &net.UDPAddr{IP: net.ParseIP(c.ip(network)), Port: 5060}
}

// waitSIP waits until the node at addr answers OPTIONS with 200.
func waitSIP(t testing.TB, ua *sipUA, addr *net.UDPAddr, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < within {
		res, err := ua.options(addr, 2*time.Second)
		if err == nil && res.status == 200 {
			return time.Since(start)
		}
		last = err
		if err == nil {
			last = fmt.Errorf("OPTIONS answered %s", res)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no SIP answer from %s within %s: %v", addr, within, last)
	return 0
}

// eventually retries f every interval until it returns nil or within passes; it returns how long
// it took, or fails the test with f's last error.
func eventually(t testing.TB, what string, within, interval time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(interval)
	}
}

// tarOwners returns the owner UID of every entry of a tar stream (docker cp CONTAINER:PATH -).
func tarOwners(r io.Reader) (map[string]int, error) {
	owners := map[string]int{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return owners, nil
		}
		if err != nil {
			return owners, err
		}
		owners[h.Name] = h.Uid
	}
}

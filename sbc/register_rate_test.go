package sbc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// registerRateRooms is how many distinct rooms the REGISTER rate measurement registers.
const registerRateRooms = 200

// registerRateConfig is loadConfig with registerRateRooms more rooms.
func registerRateConfig(t *testing.T) config.Config {
	cfg := loadConfig(t)
	for i := range registerRateRooms {
		cfg.Rooms = append(cfg.Rooms, config.Room{Name: fmt.Sprintf("rate%03d", i), Password: fmt.Sprintf("pw-rate%03d", i), Inbound: "open"})
	}
	return cfg
}

// processCPU returns the CPU time (user and system) this process has used so far.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sippRegisterRate runs the bench scenario deploy/bench/register.xml (REGISTER, 401,
// REGISTER with digest, 200) against n, count registrations with at most 200 in progress, as
// fast as the node answers, and returns registrations per second. Every one must succeed. It
// logs the test process's CPU time per registration (every node's, not SIPp's).
func sippRegisterRate(t *testing.T, n *Node, count int) float64 {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for i := range registerRateRooms {
		fmt.Fprintf(&csv, "rate%03d;[authentication username=rate%03d password=pw-rate%03d]\n", i, i, i)
	}
	inf := filepath.Join(t.TempDir(), "rooms.csv")
	if err := os.WriteFile(inf, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	start, cpu, first := time.Now(), processCPU(t), n.cluster.Stats().LastIndex
	// startSIPp resolves scenarios under testdata/sipp
	s := startSIPp(t, n.addr(t, "udp"), "-sf", "../../../deploy/bench/register.xml", "-inf", inf,
		"-i", "127.0.0.1", "-p", strconv.Itoa(testpeer.FreeUDPPort(t)), "-r", "100000", "-l", "200",
		"-buff_size", "4194304", // SIPp's 64 KiB default overflows when it falls behind (register.sh)
		"-m", strconv.Itoa(count), "-timeout", "50s", "-timeout_error")
	s.wait(t)
	took := time.Since(start)
	t.Logf("%s: %d REGISTER+digest in %s, process CPU %.0f µs each, %d Raft log entries",
		n.cfg.Node.ID, count, took.Round(time.Millisecond), float64((processCPU(t)-cpu).Microseconds())/float64(count),
		n.cluster.Stats().LastIndex-first)
	return float64(count) / took.Seconds()
}

// waitSteadyCluster waits until every node's state records the log formats all members apply:
// until the leader has heard every member, it writes one plain JSON entry per command (the
// mixed-version rule of cluster/batch.go), which is not the steady state being measured.
func waitSteadyCluster(t *testing.T, nodes []*Node) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, func() bool {
			_, members := n.cluster.State().ClusterFormats()
			return len(members) == len(nodes)
		})
	}
}

// TestClusterRegisterRate measures REGISTER + digest per second (SIPp, closed loop of 200)
// on a single node, on the leader of a 3-node cluster and on a follower (whose writes are
// forwarded to the leader). A figure, not an assertion. PORTCULLIS_REGISTER_CASE=leader or
// =follower measures only that case (for a CPU profile of it alone).
func TestClusterRegisterRate(t *testing.T) {
	if os.Getenv("PORTCULLIS_LOAD") == "" {
		t.Skip("load measurement: set PORTCULLIS_LOAD=1")
	}
	count := 20000
	if v, err := strconv.Atoi(os.Getenv("PORTCULLIS_REGISTER_COUNT")); err == nil && v > 0 {
		count = v
	}
	if c := os.Getenv("PORTCULLIS_REGISTER_CASE"); c == "leader" || c == "follower" {
		nodes := startCluster(t, registerRateConfig)
		waitSteadyCluster(t, nodes)
		n := nodes[0]
		if c == "follower" {
			n = nodes[1]
		}
		t.Logf("REGISTER+digest/s: 3-node cluster %s %.0f", c, sippRegisterRate(t, n, count))
		return
	}
	one := startNode(t, registerRateConfig(t))
	waitSteadyCluster(t, []*Node{one}) // a lone node too writes JSON entries until its first ping round
	single := sippRegisterRate(t, one, count)
	nodes := startCluster(t, registerRateConfig)
	waitSteadyCluster(t, nodes)
	leader := sippRegisterRate(t, nodes[0], count)
	follower := sippRegisterRate(t, nodes[1], count)
	t.Logf("REGISTER+digest/s: single node %.0f, 3-node cluster leader %.0f (%.0f%%), follower %.0f (%.0f%%)",
		single, leader, 100*leader/single, follower, 100*follower/single)
}

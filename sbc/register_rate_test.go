package sbc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// sippRegisterRate runs the bench scenario deploy/bench/register.xml (REGISTER, 401,
// REGISTER with digest, 200) against n, count registrations with at most 200 in progress, as
// fast as the node answers, and returns registrations per second. Every one must succeed.
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
	start := time.Now()
	// startSIPp resolves scenarios under testdata/sipp
	s := startSIPp(t, n.addr(t, "udp"), "-sf", "../../../deploy/bench/register.xml", "-inf", inf,
		"-i", "127.0.0.1", "-p", strconv.Itoa(testpeer.FreeUDPPort(t)), "-r", "100000", "-l", "200",
		"-m", strconv.Itoa(count), "-timeout", "50s", "-timeout_error")
	s.wait(t)
	return float64(count) / time.Since(start).Seconds()
}

// TestClusterRegisterRate measures REGISTER + digest per second (SIPp, closed loop of 200)
// on a single node, on the leader of a 3-node cluster and on a follower (whose writes are
// forwarded to the leader). A figure, not an assertion. PORTCULLIS_REGISTER_CASE=follower
// measures only the follower (for a CPU profile of that case alone).
func TestClusterRegisterRate(t *testing.T) {
	if os.Getenv("PORTCULLIS_LOAD") == "" {
		t.Skip("load measurement: set PORTCULLIS_LOAD=1")
	}
	count := 20000
	if v, err := strconv.Atoi(os.Getenv("PORTCULLIS_REGISTER_COUNT")); err == nil && v > 0 {
		count = v
	}
	if os.Getenv("PORTCULLIS_REGISTER_CASE") == "follower" {
		nodes := startCluster(t, registerRateConfig)
		t.Logf("REGISTER+digest/s: 3-node cluster follower %.0f", sippRegisterRate(t, nodes[1], count))
		return
	}
	single := sippRegisterRate(t, startNode(t, registerRateConfig(t)), count)
	nodes := startCluster(t, registerRateConfig)
	leader := sippRegisterRate(t, nodes[0], count)
	follower := sippRegisterRate(t, nodes[1], count)
	t.Logf("REGISTER+digest/s: single node %.0f, 3-node cluster leader %.0f (%.0f%%), follower %.0f (%.0f%%)",
		single, leader, 100*leader/single, follower, 100*follower/single)
}

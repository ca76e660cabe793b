package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// Config configures a Node. Start from DefaultConfig; zero durations and counts are replaced by
// their defaults in Validate.
type Config struct {
	// NodeID names this node in the cluster; it must never change for a data dir.
	// Default: the ID recorded in DataDir (so a container whose host name changes keeps its
	// identity), else the host name (or "node1" when it cannot be read).
	NodeID string
	// DataDir holds the Raft log (raft/raft.db), snapshots (raft/snapshots, 3 kept) and the
	// cluster certificates (tls/). Default: ./data.
	DataDir string
	// Bind is the TCP address of the cluster listener (Raft and internal RPC, mutual TLS).
	// Default: 127.0.0.1:7000. Port 0 picks a free port (tests).
	Bind string
	// Advertise is the address other nodes dial. It must be a concrete host:port.
	// Default: Bind (or the address actually bound when Bind's port is 0).
	Advertise string
	// Join lists cluster addresses to contact on the first start only (a data dir with Raft
	// state rejoins from its own configuration). Default: none, which bootstraps a new
	// cluster of this one node; with JoinToken set, the token's address.
	Join []string
	// JoinToken is a token from NewJoinToken / `portcullis cluster join-token`: on the first
	// start it obtains this node's certificate from the CA holder. Default: none.
	JoinToken string
	// CACert, Cert, Key are PEM file paths of the cluster CA certificate and this node's
	// certificate (with both serverAuth and clientAuth usages) and key. Default: generated in
	// DataDir/tls on first start (bootstrap) or obtained with JoinToken.
	CACert, Cert, Key string
	// HeartbeatTimeout: a follower without contact from the leader for this long starts an
	// election. Default: 500ms (LAN).
	HeartbeatTimeout time.Duration
	// ElectionTimeout: a candidate without a majority for this long retries. Default: 500ms.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: a leader without contact with a majority for this long steps down.
	// Must not exceed HeartbeatTimeout. Default: 250ms.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long a follower may wait to learn of a commit with no new
	// entries. Default: 20ms.
	CommitTimeout time.Duration
	// ApplyTimeout bounds one write (Propose, forwarding, membership change) when the caller's
	// context has no earlier deadline. Default: 5s.
	ApplyTimeout time.Duration
	// SnapshotThreshold: take a snapshot after this many new log entries. Registrations churn
	// (one entry per REGISTER refresh), so this is lower than Raft's 8192. Default: 4096.
	SnapshotThreshold uint64
	// SnapshotInterval: how often to check whether a snapshot is due. Default: 60s.
	SnapshotInterval time.Duration
	// NodeLostAfter: a member the leader has not reached for this long is lost, and the calls
	// it bridged are ended by the cluster (record "node lost", rooms free again). The leader
	// pings members every second, or every third of this when shorter. Default: 3s; at least
	// 300ms.
	NodeLostAfter time.Duration
	// Logger receives the node's logs and Raft's (adapted from hclog). Default: slog.Default().
	Logger *slog.Logger
	// Dial, when set, opens the raw TCP connection to another member (mutual TLS runs over
	// it): a proxy, or a test that cuts a node off. Default: a plain TCP dial.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// dial replaces the raw TCP dial (tests use it to partition nodes).
	dial func(ctx context.Context, addr string) (net.Conn, error)
	// expireEvery is the leader's expiry sweep period (tests shorten it). Default: 5s.
	expireEvery time.Duration
	// clock is the time a node answers pings with (tests skew it). Default: time.Now.
	clock func() time.Time
	// trailingLogs overrides how many entries stay after a snapshot (tests). Default: 2048.
	trailingLogs uint64
	// beforeApply, when set, runs before the FSM applies each batch (tests hold a node behind).
	beforeApply func()
	// groupMax overrides how many commands one log entry may carry (1: no grouping, benchmarks).
	groupMax int
	// groupGap overrides the group commit's pacing (batch.go): negative turns it off
	// (benchmarks and tests compare).
	groupGap time.Duration
	// formats overrides the log formats this node says it applies (tests play an older node).
	formats int
	// afterForwardedApply, when set, runs on the leader after it applied a forwarded write and
	// before it answers (tests lose the answer).
	afterForwardedApply func()
}

// Defaults.
const (
	DefaultDataDir            = "./data"
	DefaultBind               = "127.0.0.1:7000"
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	DefaultApplyTimeout       = 5 * time.Second
	DefaultSnapshotThreshold  = 4096
	DefaultSnapshotInterval   = 60 * time.Second
	DefaultNodeLostAfter      = 3 * time.Second
	defaultExpireEvery        = 5 * time.Second
	// snapshotsKept is how many snapshots stay on disk.
	snapshotsKept = 3
	// trailingLogs is how many entries stay in the log after a snapshot, so a follower that
	// was briefly away catches up from the log rather than a full snapshot.
	trailingLogs = 2048
)

// DefaultConfig returns the configuration of a single node with data in ./data, listening on
// 127.0.0.1:7000: what `portcullis serve` runs with no configuration.
func DefaultConfig() Config {
	return Config{
		DataDir:            DefaultDataDir,
		Bind:               DefaultBind,
		HeartbeatTimeout:   DefaultHeartbeatTimeout,
		ElectionTimeout:    DefaultElectionTimeout,
		LeaderLeaseTimeout: DefaultLeaderLeaseTimeout,
		CommitTimeout:      DefaultCommitTimeout,
		ApplyTimeout:       DefaultApplyTimeout,
		SnapshotThreshold:  DefaultSnapshotThreshold,
		SnapshotInterval:   DefaultSnapshotInterval,
		NodeLostAfter:      DefaultNodeLostAfter,
	}
}

// Validate fills zero fields with defaults and checks the configuration.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID(c.DataDir)
	}
	if c.Bind == "" {
		c.Bind = d.Bind
	}
	setDur := func(p *time.Duration, def time.Duration) {
		if *p == 0 {
			*p = def
		}
	}
	setDur(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	setDur(&c.ElectionTimeout, d.ElectionTimeout)
	setDur(&c.LeaderLeaseTimeout, d.LeaderLeaseTimeout)
	setDur(&c.CommitTimeout, d.CommitTimeout)
	setDur(&c.ApplyTimeout, d.ApplyTimeout)
	setDur(&c.SnapshotInterval, d.SnapshotInterval)
	setDur(&c.NodeLostAfter, d.NodeLostAfter)
	setDur(&c.expireEvery, defaultExpireEvery)
	if c.trailingLogs == 0 {
		c.trailingLogs = trailingLogs
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.dial == nil {
		c.dial = c.Dial
	}

	if strings.ContainsAny(c.NodeID, " \t\r\n/\\") || len(c.NodeID) > 64 {
		return errf(ErrConfig, "node id %q: use at most 64 characters, no spaces or slashes", c.NodeID)
	}
	if _, _, err := net.SplitHostPort(c.Bind); err != nil {
		return errf(ErrConfig, "bind %q: %v", c.Bind, err)
	}
	if c.Advertise != "" {
		if err := checkAdvertise(c.Advertise); err != nil {
			return err
		}
	} else if host, port, _ := net.SplitHostPort(c.Bind); port != "0" && unspecified(host) {
		return errf(ErrConfig, "bind %q is not an address other nodes can dial: set advertise", c.Bind)
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return errf(ErrConfig, "join %q: %v", j, err)
		}
	}
	if (c.CACert == "") != (c.Cert == "") || (c.Cert == "") != (c.Key == "") {
		return errf(ErrConfig, "ca, cert and key must be set together")
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < c.HeartbeatTimeout {
		return errf(ErrConfig, "election timeout %s must be at least heartbeat timeout %s (>= 5ms)",
			c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return errf(ErrConfig, "leader lease timeout %s must be between 5ms and heartbeat timeout %s",
			c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.CommitTimeout < time.Millisecond {
		return errf(ErrConfig, "commit timeout %s is below 1ms", c.CommitTimeout)
	}
	if c.NodeLostAfter < 300*time.Millisecond {
		return errf(ErrConfig, "node lost after %s is below 300ms", c.NodeLostAfter)
	}
	if c.SnapshotInterval < 5*time.Millisecond {
		return errf(ErrConfig, "snapshot interval %s is below 5ms", c.SnapshotInterval)
	}
	return nil
}

// defaultNodeID is the ID recorded in dataDir, else the host name.
func defaultNodeID(dataDir string) string {
	if ni, err := readInfo(dataDir); err == nil && ni.NodeID != "" {
		return ni.NodeID
	}
	id, err := os.Hostname()
	if err != nil || id == "" {
		id = "node1"
	}
	return id
}

func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

func checkAdvertise(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return errf(ErrConfig, "advertise %q: %v", a, err)
	}
	if unspecified(host) || port == "0" || port == "" {
		return errf(ErrConfig, "advertise %q must be a concrete host:port", a)
	}
	return nil
}

func (c *Config) String() string {
	return fmt.Sprintf("node %s data %s bind %s advertise %s", c.NodeID, c.DataDir, c.Bind, c.Advertise)
}

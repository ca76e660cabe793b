package admin

import (
	"context"
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/turn"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// SocketName is the file name of the token bootstrap socket inside the data dir.
const SocketName = "admin.sock"

// Config configures the admin server. The zero value of every field but Listen has a usable
// default; FromConfig fills it from the node configuration.
type Config struct {
	// Listen is the API's TCP address. Default: 127.0.0.1:8443. Port 0 picks a free port (Addr
	// tells which).
	Listen string
	// TLSCert and TLSKey are PEM files; when set the API speaks HTTPS only (TLS 1.2 or later).
	// Default: none (plain HTTP, which config validation allows on loopback only).
	TLSCert, TLSKey string
	// TLSConfig, when set and TLSCert is not, serves HTTPS with it (the ACME certificate,
	// hot-swapped by its GetCertificate). Default: none.
	TLSConfig *tls.Config
	// AllowedHosts are Host/Origin names accepted besides loopback addresses and "localhost"
	// (DNS rebinding protection). The check runs on a loopback listener, and on any listener
	// when this list is not empty. Default: none.
	AllowedHosts []string
	// Token, when set, is accepted as an admin token named "config" (admin.token or
	// PORTCULLIS_ADMIN_TOKEN). It lives in this process only: it is never written to the
	// cluster state, and removing it from the config revokes it. Default: none.
	Token string
	// Socket is the path of the token bootstrap unix socket (mode 0600). Default: none, which
	// disables it; FromConfig puts it at DATA_DIR/admin.sock.
	Socket string
	// NodeID names this node in audit entries, bans and call ownership. Default: empty.
	NodeID string
	// MetricsPublic serves /metrics without a token to every peer. Default: false (a token is
	// needed except from loopback peers).
	MetricsPublic bool
	// AuthFailureBurst failed authentications from one source are tolerated before it gets 429.
	// Default: 10.
	AuthFailureBurst int
	// AuthFailureEvery is how often a source regains one tolerated failure. Default: 6s
	// (10 per minute).
	AuthFailureEvery time.Duration
	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// FromConfig derives the admin Config from the node configuration.
func FromConfig(c config.Config, nodeID string, log *slog.Logger) Config {
	sock := ""
	if c.Node.DataDir != "" {
		sock = filepath.Join(c.Node.DataDir, SocketName)
	}
	return Config{
		Listen: c.Admin.Listen, TLSCert: c.Admin.TLS.Cert, TLSKey: c.Admin.TLS.Key,
		AllowedHosts: c.Admin.AllowedHosts, Token: c.Admin.Token, Socket: sock, NodeID: nodeID,
		Logger: log,
	}
}

// Deps are the parts of the node the admin server reads and drives. Store and Domain are
// required; every other member may be nil, and the API then answers the routes that need it
// with 503 unavailable (or an empty list where that is the honest answer).
type Deps struct {
	// Store is the replicated state: reads are local, writes are proposed.
	Store state.Store
	// Domain is the SIP domain: the digest realm that room credentials are hashed with.
	Domain string
	// Cluster is the Raft node; nil for a node without a cluster (tests, tools).
	Cluster Cluster
	// Calls controls the calls this node bridges.
	Calls Calls
	// Events are the guard's refusals.
	Events Events
	// Health reports whether the node serves (nil error) for /readyz and /api/v1/health.
	Health func() error
	// Ready, when set, is nil once the node has caught up with the cluster; until then every
	// API route but /api/v1/health answers 503 with Retry-After (a stale node would refuse
	// valid tokens and rate-limit their source).
	Ready func() error
	// Metrics receives the node's counters; nil: New makes one (see NewMetrics).
	Metrics *Metrics
	// Media, TURN and Raft are sampled at each scrape of /metrics. Raft defaults to Cluster's
	// Stats method when Cluster has one.
	Media func() media.Stats
	TURN  func() turn.Stats
	Raft  func() cluster.Stats
	// Doctor reports this node's own facts for `portcullis doctor` (GET /api/v1/node/doctor).
	Doctor func() NodeReport
	// Collectors are extra Prometheus collectors to register (e.g. SIP edge counters).
	Collectors []prometheus.Collector
}

// Cluster is the membership side of the Raft node (*cluster.Node implements it).
type Cluster interface {
	// Members lists the voters as the leader sees them.
	Members() []cluster.Member
	// Leader returns the leader's ID and address, empty when none is known.
	Leader() (id, addr string)
	// Join adds node id listening at addr as a voter.
	Join(ctx context.Context, id, addr string) error
	// Remove takes member id out of the cluster for good.
	Remove(ctx context.Context, id string) error
	// Consistent returns once this node has applied every write acknowledged before the call.
	Consistent(ctx context.Context) error
	// Healthy reports whether the node runs and knows a leader.
	Healthy() bool
}

// Calls controls calls (*b2bua.Engine implements it). If it also has a method
// Calls() []state.Call, its calls (ringing ones included) are listed along with the answered
// calls of the whole cluster from the state.
type Calls interface {
	// Hangup ends a call on both legs. An unknown call should give an error wrapping
	// ErrNotFound or state.ErrNotFound (404); other errors are answered 500.
	Hangup(ctx context.Context, id string) error
	// MediaStats returns the call's per-stream media statistics (JSON-encodable), false when
	// this node does not bridge the call.
	MediaStats(id string) (any, bool)
}

// LocalCalls is the optional method of Calls that lists this node's live calls.
type LocalCalls interface {
	Calls() []state.Call
}

// Events are the guard's refusals (*guard.Guard implements it).
type Events interface {
	// Recent returns up to limit refusals matching f, newest first (limit <= 0: all kept).
	Recent(f guard.EventFilter, limit int) []guard.Event
	// Subscribe returns refusals as they happen until ctx is done (then the channel closes).
	Subscribe(ctx context.Context) <-chan guard.Event
	// Counts returns refusals per rule since the guard started.
	Counts() map[string]uint64
}

// raftStats is the optional Stats method of a Cluster (*cluster.Node has it).
type raftStats interface{ Stats() cluster.Stats }

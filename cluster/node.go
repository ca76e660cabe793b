package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Node is one member of the cluster: a Raft node whose FSM is a state.State. It implements
// state.Store: reads are local, writes go through the leader.
type Node struct {
	cfg       Config
	log       *slog.Logger
	advertise string

	st    *state.State
	fsm   *fsm
	raft  *raft.Raft
	trans *raft.NetworkTransport
	store *raftboltdb.BoltStore
	mux   *mux
	rpc   *rpcClient
	tls   *tlsMaterial

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	trackMu  sync.RWMutex // guards closing and wg.Add against wg.Wait
	closing  bool
	wg       sync.WaitGroup
	stopOnce sync.Once
	done     chan struct{}
	errMu    sync.Mutex
	err      error // why the node stopped

	queue   chan state.Command
	dropped atomic.Uint64
	pending atomic.Int64 // enqueued commands not yet proposed to the end

	leaderMu     sync.Mutex
	leaderSig    chan struct{}   // closed and replaced on every leadership change of this node
	leaderCtx    context.Context // live while this node is the leader
	leaderCancel context.CancelFunc

	healthMu sync.Mutex
	contact  map[string]time.Time     // leader's view: last successful ping per member
	offsets  map[string]time.Duration // leader's view: member's clock minus ours, at the last ping

	lastApply atomic.Int64 // latency of the last Propose, ns
	proposed  atomic.Uint64

	ready     chan struct{} // closed once the node has caught up with the log (ready.go)
	readyOnce sync.Once

	lost lostTracker // leader's view of members it cannot reach (lost.go)
	// followed is the last other node this node saw lead (lost.go: a new leader counts the
	// old one's absence from its last contact)
	followed atomic.Value
	reach    reachView // this node's view of the members it reaches (reach.go)

	group     *committer    // group commit of the leader's writes (batch.go)
	fwd       *forwarder    // a follower's forwarded writes share requests (fwdbatch.go)
	nudge     *nudger       // leader: followers learn forwarded writes' commits at once (nudge.go)
	logWrites atomic.Uint64 // Raft log appends, each one bolt commit with its fsyncs (batch.go)

	formatsMu     sync.Mutex
	memberFormats map[string]int // leader's view: log formats each member said it applies
	allFormats    atomic.Bool    // leader: every member applies batch entries and binary payloads
	leaderFormats atomic.Int32   // follower: what the leader last said the cluster applies
	onceKnown     atomic.Int32   // leader: onceAll, onceNotAll or onceUnknown from its pings (once.go)
	onceIDs       *onceIDs       // ids of this node's envelopes (once.go)
}

var _ state.Store = (*Node)(nil)

const (
	queueSize     = 16384
	batchMax      = 64
	batchWait     = 5 * time.Millisecond
	enqueueTries  = 5
	pingEvery     = time.Second
	rpcIdle       = 5 * time.Minute
	raftDir       = "raft"
	boltFile      = "raft.db"
	leaderPollGap = 20 * time.Millisecond
)

// Open starts the node. On a first start without Join it bootstraps a one-node cluster
// (generating the cluster CA and its certificate unless they are configured); on a first start
// with Join (and JoinToken unless certificates are configured) it obtains a certificate, starts
// Raft and asks the leader to add it as a voter; on a restart it resumes from the data dir, with
// the membership Raft remembers. ctx bounds the start (the join); the node then runs until Close,
// Leave or a halt.
func Open(ctx context.Context, cfg Config) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "cluster", "node", cfg.NodeID)
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, raftDir), 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	tok, joinAddrs, err := joinTarget(cfg)
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen %s: %w", cfg.Bind, err)
	}
	defer func() {
		if n == nil {
			_ = ln.Close()
		}
	}()
	advertise := advertiseOf(cfg, ln)
	if err := checkAdvertise(advertise); err != nil {
		return nil, err
	}
	if err := checkInfo(cfg.DataDir, cfg.NodeID, advertise); err != nil {
		return nil, err
	}
	if err := ensureCerts(ctx, &cfg, tok, joinAddrs, advertise, log); err != nil {
		return nil, err
	}
	tm, err := loadTLS(&cfg)
	if err != nil {
		return nil, err
	}

	n = &Node{
		cfg: cfg, log: log, advertise: advertise, st: state.New(), tls: tm,
		done: make(chan struct{}), queue: make(chan state.Command, queueSize),
		leaderSig: make(chan struct{}), contact: map[string]time.Time{}, offsets: map[string]time.Duration{}, ready: make(chan struct{}),
		onceIDs: newOnceIDs(),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.fsm = newFSM(n.st, log, func(err error) { go n.halt(err) })
	n.fsm.before = cfg.beforeApply
	n.mux = newMux(ln, advertise, tm, cfg.dial, log)
	n.mux.handle = n.handleConn
	n.rpc = newRPCClient(n.mux)
	if err := n.startRaft(ctx, joinAddrs); err != nil {
		n.stop(err)
		<-n.done
		return nil, err
	}
	return n, nil
}

// joinTarget reads the join token, if any, and the addresses to join (none: bootstrap or
// resume).
func joinTarget(cfg Config) (*joinToken, []string, error) {
	var tok *joinToken
	if cfg.JoinToken != "" {
		var err error
		if tok, err = parseJoinToken(cfg.JoinToken); err != nil {
			return nil, nil, err
		}
	}
	joinAddrs := cfg.Join
	if len(joinAddrs) == 0 && tok != nil {
		joinAddrs = tok.Addrs
	}
	return tok, joinAddrs, nil
}

// advertiseOf is the address other members reach this node at: configured, else the bind
// address (with the port the listener got when it asked for port 0).
func advertiseOf(cfg Config, ln net.Listener) string {
	if cfg.Advertise != "" {
		return cfg.Advertise
	}
	if _, port, _ := net.SplitHostPort(cfg.Bind); port == "0" {
		return ln.Addr().String()
	}
	return cfg.Bind
}

// ensureCerts makes sure the node has its cluster certificates: configured, in the data dir,
// created (bootstrap) or obtained with the join token (join).
func ensureCerts(ctx context.Context, cfg *Config, tok *joinToken, joinAddrs []string, advertise string, log *slog.Logger) error {
	switch {
	case cfg.CACert != "" || haveTLS(cfg.DataDir):
		return nil
	case len(joinAddrs) == 0:
		log.Info("creating cluster CA and node certificate", "dir", filepath.Join(cfg.DataDir, tlsDir))
		return Init(cfg.DataDir, cfg.NodeID, advertise)
	case tok != nil:
		return fetchCert(ctx, cfg, tok, advertise, log)
	default:
		return errf(ErrConfig, "joining %v needs a join token or the cluster certificates (ca, cert, key)", joinAddrs)
	}
}

// startRaft opens the Raft stores, starts Raft, bootstraps, joins or resumes, and starts the
// node's background work.
func (n *Node) startRaft(ctx context.Context, joinAddrs []string) error {
	cfg := &n.cfg
	hl := newHCLog(cfg.Logger, "raft", "node", cfg.NodeID)
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &raftLayer{m: n.mux, closed: make(chan struct{})},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hl.Named("transport"),
	})
	logs, snaps, has, err := n.openRaftStores(hl)
	if err != nil {
		return err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.trailingLogs
	rc.BatchApplyCh = true
	rc.Logger = hl
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	if err := raft.ValidateConfig(rc); err != nil {
		return errf(ErrConfig, "%v", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, n.store, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	n.group = newCommitter(r, func() time.Duration { return n.cfg.ApplyTimeout }, cmp.Or(cfg.groupMax, groupMax), max(cmp.Or(cfg.groupGap, groupGap), 0))
	n.group.modern = n.allFormats.Load
	n.group.once = n.clusterOnce
	n.goTracked(func() { n.group.run(n.ctx) })
	n.fwd = newForwarder(n)
	n.goTracked(func() { n.fwd.run(n.ctx) })
	n.nudge = newNudger(r, func() time.Duration { return n.cfg.ApplyTimeout })
	n.goTracked(func() { n.nudge.run(n.ctx) })
	n.mux.start()
	n.goTracked(func() { n.watchLeadership(notify) })
	n.goTracked(n.watchLeaders)

	if err := n.bootstrapJoinOrResume(ctx, has, joinAddrs); err != nil {
		return err
	}
	n.goTracked(n.batcher)
	n.RunLeaderTask(n.ctx, cfg.expireEvery, n.expireSweep)
	n.RunLeaderTask(n.ctx, n.pingInterval(), n.pingMembers)
	n.RunLeaderTask(n.ctx, lostCheckEvery, n.lostSweep)
	n.goTracked(n.catchUp)
	n.goTracked(n.runReach)
	return nil
}

// openRaftStores opens the Raft log (bolt, behind a cache) and the snapshot store, and says
// whether they hold state from an earlier run.
func (n *Node) openRaftStores(hl hclog.Logger) (raft.LogStore, raft.SnapshotStore, bool, error) {
	cfg := &n.cfg
	dir := filepath.Join(cfg.DataDir, raftDir)
	// NoFreelistSync: bolt does not write its free-page list with every commit (it rebuilds it
	// by a scan when the file is opened): each Raft append is one page write and one
	// allocation of the whole list fewer. The log entries are synced as before.
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltFile),
		BoltOptions: &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistArrayType}})
	if err != nil {
		return nil, nil, false, fmt.Errorf("cluster: open raft log: %w", err)
	}
	n.store = store
	logs, err := raft.NewLogCache(512, &countingLogStore{BoltStore: store, writes: &n.logWrites})
	if err != nil {
		return nil, nil, false, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsKept, hl.Named("snapshots"))
	if err != nil {
		return nil, nil, false, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	has, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return nil, nil, false, fmt.Errorf("cluster: read raft state: %w", err)
	}
	return logs, snaps, has, nil
}

// bootstrapJoinOrResume starts a new cluster (no state, nothing to join), joins one, or says
// the node resumes from its data dir.
func (n *Node) bootstrapJoinOrResume(ctx context.Context, has bool, joinAddrs []string) error {
	switch {
	case has:
		n.log.Info("resuming from data dir", "dir", n.cfg.DataDir, "address", n.advertise)
		return nil
	case len(joinAddrs) > 0:
		return n.joinCluster(ctx, joinAddrs)
	}
	f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: raft.ServerID(n.cfg.NodeID), Address: raft.ServerAddress(n.advertise), Suffrage: raft.Voter}}})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	n.log.Info("bootstrapped a new cluster", "address", n.advertise)
	return nil
}

// goTracked runs f in a goroutine that Close waits for; it does nothing once the node stops.
func (n *Node) goTracked(f func()) bool {
	n.trackMu.RLock()
	defer n.trackMu.RUnlock()
	if n.closing {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// State returns the local replicated state, for reads.
func (n *Node) State() *state.State { return n.st }

// NodeID returns this node's ID.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// Addr returns the address other nodes dial.
func (n *Node) Addr() string { return n.advertise }

// Done is closed when the node has stopped (Close, Leave, Decommission, removal or a halt).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the node stopped: nil while it runs, ErrClosed after Close or Leave, an error
// wrapping ErrHalted when it met a command it cannot apply.
func (n *Node) Err() error {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.err
}

// Close stops the node now, without a leadership transfer. It is safe to call more than once.
func (n *Node) Close() error {
	n.stop(ErrClosed)
	<-n.done
	return nil
}

// stop shuts everything down once; reason is what Err reports.
func (n *Node) stop(reason error) {
	n.stopOnce.Do(func() {
		n.errMu.Lock()
		n.err = reason
		n.errMu.Unlock()
		if errors.Is(reason, ErrHalted) {
			n.log.Error("cluster node halted", "error", reason)
		}
		n.trackMu.Lock()
		n.closing = true
		n.trackMu.Unlock()
		n.cancel()
		if n.raft != nil {
			if err := n.raft.Shutdown().Error(); err != nil {
				n.log.Warn("raft shutdown", "error", err)
			}
		}
		if n.trans != nil {
			_ = n.trans.Close()
		}
		n.mux.close()
		n.rpc.close()
		n.wg.Wait()
		if n.store != nil {
			if err := n.store.Close(); err != nil {
				n.log.Warn("close raft log", "error", err)
			}
		}
		close(n.done)
	})
}

// halt stops the node after the FSM met an entry it cannot apply. Writes are refused at once;
// Raft keeps running for one heartbeat timeout so that, if this node leads, the followers learn
// the entry is committed (and halt too) rather than wait for a leader that is gone.
func (n *Node) halt(err error) {
	select {
	case <-time.After(n.cfg.HeartbeatTimeout):
	case <-n.ctx.Done():
	}
	n.stop(err)
}

// stopped returns the reason the node stopped, or nil while it runs.
func (n *Node) stopped() error {
	select {
	case <-n.done:
		return n.Err()
	default:
	}
	if err := n.fsm.haltErr(); err != nil {
		return err
	}
	if n.ctx.Err() != nil {
		if err := n.Err(); err != nil {
			return err
		}
		return ErrClosed
	}
	return nil
}

// expireSweep drops expired bindings and bans, with the leader's clock.
func (n *Node) expireSweep(ctx context.Context) {
	now := time.Now()
	if !n.st.Due(now) {
		return
	}
	if err := n.Propose(ctx, state.Expire(now, 0, 0)); err != nil && ctx.Err() == nil {
		n.log.Warn("expiry sweep failed", "error", err)
	}
}

// Healthy reports whether the node is a running member that knows a leader and has caught up
// with the cluster's log since it started (for /readyz; see Ready).
func (n *Node) Healthy() bool {
	if n.stopped() != nil || !n.Ready() {
		return false
	}
	addr, _ := n.raft.LeaderWithID()
	return addr != ""
}

// WaitLeader waits until a leader is known (or ctx ends).
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(leaderPollGap)
	defer t.Stop()
	for {
		if err := n.stopped(); err != nil {
			return err
		}
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		case <-t.C:
		}
	}
}

// nodeInfo is written to DataDir/tls/node.json: who this data dir belongs to and where it
// listens (read by `portcullis cluster join-token`).
type nodeInfo struct {
	NodeID    string `json:"node_id"`
	Advertise string `json:"advertise"`
}

func checkInfo(dataDir, id, advertise string) error {
	p := tlsPath(dataDir, infoFile)
	if b, err := os.ReadFile(p); err == nil {
		var ni nodeInfo
		if json.Unmarshal(b, &ni) == nil && ni.NodeID != "" && ni.NodeID != id {
			return errf(ErrConfig, "data dir %s belongs to node %q, not %q", dataDir, ni.NodeID, id)
		}
		if ni.Advertise == advertise {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(nodeInfo{NodeID: id, Advertise: advertise})
	return writeFileAtomic(p, b, 0o644)
}

func readInfo(dataDir string) (nodeInfo, error) {
	var ni nodeInfo
	b, err := os.ReadFile(tlsPath(dataDir, infoFile))
	if err != nil {
		return ni, err
	}
	return ni, json.Unmarshal(b, &ni)
}

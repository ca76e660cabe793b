package sbc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/logging"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/turn"
	"github.com/portcullis-sbc/portcullis/sbc/acmecert"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
	"github.com/portcullis-sbc/portcullis/sbc/b2bua"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
	"github.com/portcullis-sbc/portcullis/sbc/edge"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
	"github.com/portcullis-sbc/portcullis/sbc/registrar"
	"github.com/portcullis-sbc/portcullis/sbc/sinks"
)

// Version is the build version, set by the binary.
var Version = "dev"

// Node is one Portcullis signalling node.
type Node struct {
	cfg config.Config
	log *slog.Logger

	store   state.Store
	cluster *cluster.Node // set by Start (openCluster); nil only on a node that never started
	// clusterDial replaces the cluster's TCP dial (tests cut a node off the cluster network).
	clusterDial func(ctx context.Context, addr string) (net.Conn, error)

	media    *media.Manager
	turn     *turn.Server
	turnGate turnGate // the guard, for the TURN server (which starts first)

	sipLog *slog.Logger // sipgo's: rate-limited, packet content at Debug only
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client

	edgeStats edge.Stats
	peers     trunkPeers // other nodes' SIP addresses (exempt from the datagram meter)
	blocklist edge.Blocklist
	bound     []Bound
	own       []netip.Addr // the node's own addresses, gathered once at start (nodeAddrs)
	tap       edge.Tap     // told about every message the listeners write (tests); nil: none
	serves    []func() error
	closers   []io.Closer
	wg        sync.WaitGroup
	cancel    context.CancelFunc // stops background loops

	auth    *digest.Authenticator
	clock   func() time.Time // digest nonce clock; nil: time.Now (tests move it)
	reg     *registrar.Registrar
	calls   *b2bua.Engine
	admin   *admin.Server
	metrics *admin.Metrics
	guard   *guard.Guard
	sinks   *sinks.Shipper // records and events leaving the box (sinks.go); nil: none
	kick    chan struct{}  // rebuild the edge blocklist

	acme           *acmecert.Manager // nil without acme: (acme.go)
	acmeAddr       netip.AddrPort    // the challenge listener
	acmeCheckEvery time.Duration     // 0: defaultACMECheck (tests shorten it)
	acmeBackoff    time.Duration     // 0: acmecert's default (tests shorten it)

	localBanMu sync.Mutex
	localBans  map[netip.Prefix]time.Time // this node's bans not yet applied by the cluster

	// unsolicitedResponses counts responses that matched no transaction.
	unsolicitedResponses atomic.Uint64

	// domainSource says where cfg.SIP.Domain comes from (realm.go); realmWarned: the warning
	// that it differs from the recorded realm was logged.
	domainSource string
	realmWarned  bool

	draining bool
	mu       sync.Mutex

	ready     chan struct{} // closed once the node serves (ready.go)
	readyOnce sync.Once
}

// New builds a node from a validated configuration. Nothing is bound until Start.
func New(cfg config.Config, log *slog.Logger) (*Node, error) {
	// Every component's logs are rate-limited per message (a packet or a flood can trigger most
	// of them: refusals, bans, failed branches, closed connections); sipgo gets a stricter budget.
	base := log.Handler()
	log = slog.New(logging.RateLimited(base, 20, 10*time.Second))
	n := &Node{cfg: cfg, log: log, kick: make(chan struct{}, 1), metrics: admin.NewMetrics(), ready: make(chan struct{})}
	// sipgo logs whole raw packets on parse errors, at Error: give each of its loggers the
	// rate-limited, trimming one, with packet content demoted to Debug.
	sipLog := slog.New(logging.Library(logging.RateLimited(base, 5, 10*time.Second))).With("component", "sip")
	n.sipLog = sipLog
	sipDefault.Set(sipLog.Handler())
	var err error
	n.ua, err = sipgo.NewUA(
		// sipgo writes its UA name into the From of requests it completes (display name and
		// user): nothing, so that nothing names the product or its stack. sip.user_agent goes
		// only into Server/User-Agent headers.
		sipgo.WithUserAgent(""),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerTerminateOnConnClose(),
			sip.WithTransactionLayerUnhandledResponseHandler(n.unsolicited)),
	)
	if err != nil {
		return nil, fmt.Errorf("sip user agent: %w", err)
	}
	if n.srv, err = sipgo.NewServer(n.ua, sipgo.WithServerLogger(sipLog)); err != nil {
		return nil, fmt.Errorf("sip server: %w", err)
	}
	return n, nil
}

// sipDefault is sipgo's process-wide default logger (sip.DefaultLogger: what it logs outside the
// loggers a UA is given, such as unsolicited responses by default and connection bookkeeping). It
// is set once, before any sipgo code runs, and forwards to the logger of the node built last.
var sipDefault = logging.NewSwitch(logging.Library(logging.RateLimited(slog.Default().Handler(), 5, 10*time.Second)))

func init() {
	sip.SetDefaultLogger(slog.New(sipDefault))
	// sipgo reads every datagram into one buffer of this size (32 KB by default): a larger one
	// was cut and failed to parse although sip.max_message_size allows 65535 bytes. At the
	// largest value (a UDP payload is at most 65507 bytes over IPv4, 65527 over IPv6) no
	// datagram is cut, and the edge still drops those over the configured maximum. The variable
	// is process-wide and read by sipgo's goroutines, so it is set here, before any runs. Stream
	// connections use the same size for their read buffer (64 KB each: see sip.max_conns).
	sip.TransportBufferReadSize = math.MaxUint16
	// sipgo refuses to write a UDP message over 1,300 bytes (sip.UDPMTUSize-200; RFC 3261
	// §18.1.1 would move such a request to TCP, which a room behind NAT with only its UDP flow
	// cannot receive, so a room system's five-stream INVITE failed). It is lifted to the largest
	// sip.max_message_size allowed; each node's UDP sockets (edge.PacketConn.WriteTo) refuse
	// what is over its own limit.
	sip.UDPMTUSize = config.MaxMessageSizeLimit + 200
}

// unsolicited is told about a response that matches no client transaction (a late
// retransmission, or a reflection or flood): it is dropped, and logged at Debug through the
// rate-limited logger.
func (n *Node) unsolicited(res *sip.Response) {
	n.unsolicitedResponses.Add(1)
	n.sipLog.Debug("unsolicited SIP response dropped", "status", res.StatusCode, "source", res.Source())
}

// Start binds every socket and starts serving. It returns once the node is ready (it has caught
// up with the cluster; see ready.go), after at most 30 s of catching up (the node then answers
// 503 until it is ready), or at the first error (then everything started so far is closed).
func (n *Node) Start(ctx context.Context) error {
	if err := n.openCluster(ctx); err != nil {
		return err
	}
	if err := n.resolveDomain(ctx); err != nil {
		n.Close()
		return err
	}
	n.store = n.metrics.InstrumentStore(n.store) // write latency in /metrics
	n.own = n.nodeAddrs()                        // once: the guard, the B2BUA and the relay share them
	if err := n.startMedia(); err != nil {
		n.Close()
		return err
	}
	n.routes()
	if err := n.startACME(); err != nil {
		n.Close()
		return err
	}
	if err := n.bindSIP(ctx); err != nil {
		n.Close()
		return err
	}
	var err error
	opts := []sipgo.ClientOption{sipgo.WithClientLogger(n.sipLog.With("component", "sip-client"))}
	if b, ok := n.firstBound("udp"); ok {
		opts = append(opts, sipgo.WithClientHostname(n.advertiseHost(b)), sipgo.WithClientPort(int(b.Addr.Port())))
		if !b.Addr.Addr().IsUnspecified() {
			opts = append(opts, sipgo.WithClientConnectionAddr(b.Addr.String()))
		}
	}
	if n.client, err = sipgo.NewClient(n.ua, opts...); err != nil {
		n.Close()
		return fmt.Errorf("sip client: %w", err)
	}
	n.client.TxRequester = flowRequester{ua: n.ua, registered: func(a netip.AddrPort) bool { return n.store.State().RegisteredFlow(a) },
		listener: n.boundOfFamily, first: n.firstBoundHost}
	if err := n.startGuard(); err != nil {
		n.Close()
		return err
	}
	if err := n.startRegistrar(); err != nil {
		n.Close()
		return err
	}
	if err := n.startCalls(); err != nil {
		n.Close()
		return err
	}
	n.watchEndedCalls()
	if err := n.startSinks(); err != nil {
		n.Close()
		return err
	}
	if err := n.startAdmin(); err != nil {
		n.Close()
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.goBackground(func() { _ = n.reg.Run(bg) })
	n.startBlocklist(bg)
	n.runGuard(bg)
	n.runSinks(bg)
	n.runTrunkPeers(bg)
	n.runACME(bg)
	n.serveAdmin(bg)
	n.serveSIP()
	n.log.Info("node started", "node", n.cfg.Node.ID, "domain", n.cfg.SIP.Domain, "listeners", len(n.bound))
	n.goBackground(func() { n.becomeReady(bg) })
	n.awaitReady(ctx)
	return nil
}

// openCluster starts this node's Raft member (a one-node cluster by default). The node is not
// ready until the member has caught up with the cluster (becomeReady).
func (n *Node) openCluster(ctx context.Context) error {
	c := n.cfg.Cluster
	cc := cluster.DefaultConfig()
	cc.NodeID, cc.DataDir, cc.Bind, cc.Advertise = n.cfg.Node.ID, n.cfg.Node.DataDir, c.Bind, c.Advertise
	cc.Join, cc.JoinToken, cc.CACert, cc.Cert, cc.Key = c.Join, c.JoinToken, c.CA, c.Cert, c.Key
	cc.Logger = n.log
	cc.Dial = n.clusterDial
	cc.NodeLostAfter = c.NodeLostAfter.D()
	cc.HeartbeatTimeout, cc.ElectionTimeout = c.HeartbeatTimeout.D(), c.ElectionTimeout.D()
	cc.LeaderLeaseTimeout = c.LeaderLeaseTimeout.D()
	cn, err := cluster.Open(ctx, cc)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	n.cluster, n.store = cn, cn
	n.cfg.Node.ID = cn.NodeID() // the recorded or host-name default, when none was configured
	return nil
}

// configRoomWriters is how many of the config's rooms are written at once: the writes share
// log entries (group commit) instead of one commit each (4,000 rooms took 4 s one by one).
const configRoomWriters = 64

// applyConfigRooms writes the rooms declared in the config into the store when they differ.
func (n *Node) applyConfigRooms(ctx context.Context) error {
	st := n.store.State()
	var todo []state.Room
	for _, r := range n.cfg.Rooms {
		want := r.StateRoom(n.cfg.SIP.Domain)
		if have, ok := st.Room(want.Name); ok && sameRoom(have, want) {
			continue
		}
		want.Updated = time.Now().UTC()
		todo = append(todo, want)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan state.Room)
	errs := make(chan error, configRoomWriters)
	var wg sync.WaitGroup
	for range min(configRoomWriters, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				if err := n.store.Propose(ctx, state.PutRoom(r)); err != nil {
					errs <- fmt.Errorf("room %q from config: %w", r.Name, err)
					cancel() // the first error ends the others' writes (retried as a whole)
					return
				}
			}
		}()
	}
feed:
	for _, r := range todo {
		select {
		case next <- r:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if err, ok := <-errs; ok {
		return err
	}
	return ctx.Err()
}

func sameRoom(a, b state.Room) bool {
	a.Updated, b.Updated = time.Time{}, time.Time{}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func (n *Node) firstBound(transport string) (Bound, bool) {
	for _, b := range n.bound {
		if b.Transport == transport {
			return b, true
		}
	}
	return Bound{}, false
}

// Bound returns the bound SIP listeners.
func (n *Node) Bound() []Bound { return n.bound }

// Store is the node's state store.
func (n *Node) Store() state.Store { return n.store }

func (n *Node) goBackground(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// flowClosed is told by the edge when a TCP/TLS connection closes.
func (n *Node) flowClosed(transport string, remote netip.AddrPort) {
	if n.reg != nil {
		n.reg.FlowClosed(transport, remote)
	}
}

// Drain refuses new calls and waits for active ones until ctx is done.
func (n *Node) Drain(ctx context.Context) {
	n.mu.Lock()
	n.draining = true
	n.mu.Unlock()
	// Calls handed over for rooms registered only here are still taken until the rooms have
	// moved (drain.go); then active calls are finished (their records queued) before the
	// cluster member leaves.
	if n.calls != nil {
		n.calls.DrainRooms(n.onlyFlowHere)
		n.handOverCalls(ctx) // answered calls move to other members now (handover.go)
		n.awaitRoomsMoved(ctx)
		n.calls.Drain(ctx)
	}
	if n.cluster != nil {
		// Hand leadership over and flush queued writes; membership is kept so the node rejoins.
		if err := n.cluster.Leave(ctx); err != nil {
			n.log.Warn("cluster leave", "error", err)
		}
	}
}

// Close stops everything at once.
func (n *Node) Close() error {
	var errs []error
	if n.cancel != nil {
		n.cancel()
	}
	for _, c := range n.closers {
		errs = append(errs, c.Close())
	}
	n.closers = nil
	if n.ua != nil {
		errs = append(errs, n.ua.Close())
	}
	n.wg.Wait()
	if n.cluster != nil {
		errs = append(errs, n.cluster.Close()) // last: the parts above may still write on their way out
	}
	return errors.Join(errs...)
}

// Banner is a readable block saying what the node listens on, printed at start.
func (n *Node) Banner() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Portcullis %s node %q serving domain %s (digest realm; %s)\n", Version, n.cfg.Node.ID, n.cfg.SIP.Domain, n.domainSource)
	for _, l := range n.bound {
		fmt.Fprintf(&b, "  SIP      %-28s advertised as %s\n", l, n.advertiseHost(l))
	}
	id, addr := n.cluster.Leader()
	fmt.Fprintf(&b, "  cluster  %-28s leader %s (%s), %d member(s)\n", n.cluster.Addr(), id, addr, len(n.cluster.Members()))
	if n.media != nil {
		ms := n.media.Stats()
		fmt.Fprintf(&b, "  media    %-28s %d port pairs %s, %s path\n", n.cfg.Media.Bind, ms.Pool.Pairs, n.cfg.Media.Ports, ms.FastPath)
	}
	if n.turn != nil {
		fmt.Fprintf(&b, "  TURN     udp://%-22s relays from the media ports\n", n.turn.Addr())
	}
	if n.admin != nil {
		fmt.Fprintf(&b, "  admin    http://%-21s API /api/v1, /metrics, dashboard /\n", n.admin.Addr())
	}
	fmt.Fprintf(&b, "  data     %s\n", n.cfg.Node.DataDir)
	fmt.Fprintf(&b, "  rooms    %d configured\n", len(n.cfg.Rooms))
	return b.String()
}

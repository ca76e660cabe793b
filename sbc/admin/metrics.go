package admin

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
)

// Metrics are the node's Prometheus collectors, served at /metrics.
//
// Two kinds: counters of events only the node sees, which it increments through the methods
// below (call attempts and outcomes, REGISTER results, store write latency via
// InstrumentStore); and figures read at each scrape from the Deps (registrations, rooms, bans
// and calls from the state; refusals per rule from Events; RTP, relay pool and TURN from the
// Media and TURN funcs; Raft from the cluster), plus the Go runtime and process collectors.
//
// Gauges computed from the replicated state (portcullis_rooms, portcullis_bans,
// portcullis_registrations) show the whole cluster on every node: aggregate them with max(),
// not sum(). Everything else is this node's own.
type Metrics struct {
	reg *prometheus.Registry

	callAttempts    *prometheus.CounterVec
	callOutcomes    *prometheus.CounterVec
	registerResults *prometheus.CounterVec
	regFailures     *prometheus.CounterVec
	proposeSeconds  *prometheus.HistogramVec
	apiRequests     *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	callsAdopted    *prometheus.CounterVec
	callsHanded     prometheus.Counter

	mu       sync.Mutex
	attached bool
	handler  http.Handler
}

// NewMetrics returns the collectors with the counters the node feeds; New attaches the
// scrape-time figures of its Deps.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		callAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_call_attempts_total",
			Help: "Calls offered to this node (INVITEs that passed the guard), by direction.",
		}, []string{"direction"}),
		callOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_call_outcomes_total",
			Help: "Calls ended on this node, by direction and outcome (answered, busy, no_answer, rejected, cancelled, failed, ...).",
		}, []string{"direction", "outcome"}),
		registerResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_register_results_total",
			Help: "REGISTER requests answered by this node, by result (ok, challenged, bad_credentials, stale, ...).",
		}, []string{"result"}),
		regFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_registration_failures_total",
			Help: "Registrations of configured rooms that failed on this node, by reason (bad_credentials, unsupported_algorithm, challenge_unanswered, ...).",
		}, []string{"reason"}),
		proposeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_store_propose_seconds",
			Help:    "Time for a state write proposed through this node to be applied (Raft round trip), by command.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"command"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_admin_requests_total",
			Help: "Admin API requests, by route and HTTP status.",
		}, []string{"route", "code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_admin_auth_failures_total",
			Help: "Admin API requests refused before authentication succeeded, by reason (missing, bad_token, rate_limited).",
		}, []string{"reason"}),
		callsAdopted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_calls_adopted_total",
			Help: "Calls this node adopted from a lost node or a draining one, by result: resumed (both legs took the re-INVITE) or ended.",
		}, []string{"result"}),
		callsHanded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_calls_handed_over_total",
			Help: "Answered calls this node handed to the other members when it drained (they adopt them).",
		}),
	}
	for _, r := range []string{"resumed", "ended"} {
		m.callsAdopted.WithLabelValues(r) // both results show from the start, at 0
	}
	m.reg.MustRegister(m.callAttempts, m.callOutcomes, m.registerResults, m.regFailures, m.proposeSeconds, m.apiRequests, m.authFailures,
		m.callsAdopted, m.callsHanded,
		goCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// Registry is the registry behind /metrics, for collectors of other packages.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// CallAttempt counts a call offered in direction ("inbound" or "outbound").
func (m *Metrics) CallAttempt(direction string) { m.callAttempts.WithLabelValues(direction).Inc() }

// CallOutcome counts a call that ended, with how it ended (a small fixed set of words: the
// label must not carry caller-controlled text).
func (m *Metrics) CallOutcome(direction, outcome string) {
	m.callOutcomes.WithLabelValues(direction, outcome).Inc()
}

// RegisterResult counts one answered REGISTER by result (e.g. digest.Result.String()).
func (m *Metrics) RegisterResult(result string) { m.registerResults.WithLabelValues(result).Inc() }

// RegistrationFailed counts one failed registration of a configured room by reason.
func (m *Metrics) RegistrationFailed(reason string) { m.regFailures.WithLabelValues(reason).Inc() }

// CallAdopted counts a call this node adopted, by result ("resumed" or "ended": b2bua's
// AdoptResumed and AdoptEnded).
func (m *Metrics) CallAdopted(result string) { m.callsAdopted.WithLabelValues(result).Inc() }

// CallsHandedOver counts n answered calls this node handed over to other members as it drained.
func (m *Metrics) CallsHandedOver(n int) {
	if n > 0 {
		m.callsHanded.Add(float64(n))
	}
}

// InstrumentStore wraps st so that every Propose is timed in portcullis_store_propose_seconds.
func (m *Metrics) InstrumentStore(st state.Store) state.Store { return &timedStore{Store: st, m: m} }

type timedStore struct {
	state.Store
	m *Metrics
}

func (t *timedStore) Propose(ctx context.Context, c state.Command) error {
	start := time.Now()
	err := t.Store.Propose(ctx, c)
	t.m.proposeSeconds.WithLabelValues(c.Type.String()).Observe(time.Since(start).Seconds())
	return err
}

// attach registers the scrape-time figures of s's Deps; a Metrics serves one Server.
func (m *Metrics) attach(s *Server) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.attached {
		return fmt.Errorf("%w: Metrics already serve another admin Server", ErrConfig)
	}
	if err := m.reg.Register(&nodeCollector{s: s}); err != nil {
		return fmt.Errorf("%w: metrics: %v", ErrConfig, err)
	}
	for _, c := range s.deps.Collectors {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("%w: metrics: %v", ErrConfig, err)
		}
	}
	m.attached = true
	return nil
}

// serveMetrics serves /metrics: without a token to loopback peers or when MetricsPublic,
// else with any valid token.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.MetricsPublic && !remoteAddr(r).IsLoopback() {
		if _, err := s.authorize(r, state.ScopeRead); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	s.metrics.handler.ServeHTTP(w, r)
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dRooms         = desc("portcullis_rooms", "Rooms configured (cluster-wide).")
	dRegistrations = desc("portcullis_registrations", "Live registrations (bindings), by the node that owns their flow (cluster-wide).", "node")
	dBans          = desc("portcullis_bans", "Bans in force (cluster-wide).")
	dCalls         = desc("portcullis_calls_active", "Calls this node owns, by state: what GET /api/v1/calls lists with this node in \"node\" (per node; sum over the nodes for the cluster).", "state")
	dRefusals      = desc("portcullis_guard_refusals_total", "Requests refused by the guard on this node, by rule.", "rule")

	dRTPPackets   = desc("portcullis_rtp_packets_total", "RTP packets relayed (both directions).")
	dRTPBytes     = desc("portcullis_rtp_bytes_total", "RTP bytes relayed (both directions).")
	dRTPLost      = desc("portcullis_rtp_lost_packets_total", "RTP packets lost upstream (sequence gaps, RFC 3550).")
	dRTPDropped   = desc("portcullis_rtp_dropped_packets_total", "Packets dropped for coming from an unlatched source.")
	dSessions     = desc("portcullis_media_sessions", "Live media sessions.")
	dStreams      = desc("portcullis_media_streams", "Live media streams.")
	dTimeouts     = desc("portcullis_media_timeouts_total", "Calls ended for lack of RTP.")
	dFastPath     = desc("portcullis_media_fastpath", "Media path in use: 1 for the active mode (kernel: eBPF fast path, userspace).", "mode")
	dPorts        = desc("portcullis_relay_port_pairs", "Relay RTP/RTCP port pairs, by state (in_use, draining, free).", "state")
	dPortsRefused = desc("portcullis_relay_port_refused_total", "Port pair acquisitions refused because the pool was exhausted.")
	dSockDrops    = desc("portcullis_relay_socket_drops", "Kernel receive-queue drops summed over the relay's open sockets.")
	dGSOMessages  = desc("portcullis_relay_gso_messages_total", "UDP GSO messages the userspace relay sent: bursts of same-sized datagrams to one peer, one trip through the stack each.")
	dGSODatagrams = desc("portcullis_relay_gso_datagrams_total", "Datagrams the userspace relay sent inside UDP GSO messages.")

	dTURNLive    = desc("portcullis_turn_allocations", "Live TURN allocations.")
	dTURNTotal   = desc("portcullis_turn_allocations_total", "TURN allocations made.")
	dTURNRefused = desc("portcullis_turn_allocations_refused_total", "TURN allocations refused (quota or no ports).")
	dTURNAuth    = desc("portcullis_turn_auth_failures_total", "TURN authentication failures (wrong key, unknown user, bad REST credential).")
	dTURNPeers   = desc("portcullis_turn_peers_denied_total", "TURN permissions refused for forbidden peers.")
	dTURNDropped = desc("portcullis_turn_dropped_total", "TURN packets dropped before pion, by reason (unauth_rate: requests without credentials over their source's rate; banned).", "reason")

	dRaftState     = desc("portcullis_raft_state", "1 for this node's Raft state.", "state")
	dRaftTerm      = desc("portcullis_raft_term", "Current Raft term.")
	dRaftCommit    = desc("portcullis_raft_commit_index", "Raft commit index.")
	dRaftApplied   = desc("portcullis_raft_applied_index", "Raft index applied to the state.")
	dRaftApply     = desc("portcullis_raft_last_apply_seconds", "How long the last write through this node took to apply.")
	dRaftPeers     = desc("portcullis_raft_peers", "Other voters in the cluster.")
	dRaftContact   = desc("portcullis_raft_last_contact_seconds", "Time since the leader was last heard from (0 on the leader).")
	dRaftProposed  = desc("portcullis_raft_proposed_total", "Commands proposed through this node.")
	dRaftDropped   = desc("portcullis_raft_dropped_total", "Enqueued commands dropped because the queue was full.")
	dRaftQueued    = desc("portcullis_raft_queued", "Commands waiting in the enqueue queue.")
	allNodeMetrics = []*prometheus.Desc{dRooms, dRegistrations, dBans, dCalls, dRefusals,
		dRTPPackets, dRTPBytes, dRTPLost, dRTPDropped, dSessions, dStreams, dTimeouts, dFastPath, dPorts, dPortsRefused, dSockDrops, dGSOMessages, dGSODatagrams,
		dTURNLive, dTURNTotal, dTURNRefused, dTURNAuth, dTURNPeers, dTURNDropped,
		dRaftState, dRaftTerm, dRaftCommit, dRaftApplied, dRaftApply, dRaftPeers, dRaftContact, dRaftProposed,
		dRaftDropped, dRaftQueued}
)

// nodeCollector reads the node's figures at scrape time.
type nodeCollector struct{ s *Server }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allNodeMetrics {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter[T ~uint64 | ~int64 | ~int](ch chan<- prometheus.Metric, d *prometheus.Desc, v T, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	c.collectState(ch)
	if s.deps.Events != nil {
		for rule, n := range s.deps.Events.Counts() {
			counter(ch, dRefusals, n, rule)
		}
	}
	if s.deps.Media != nil {
		collectMedia(ch, s.deps.Media())
	}
	if s.deps.TURN != nil {
		t := s.deps.TURN()
		gauge(ch, dTURNLive, float64(t.Live))
		counter(ch, dTURNTotal, t.Total)
		counter(ch, dTURNRefused, t.Refused)
		counter(ch, dTURNAuth, t.AuthFailures)
		counter(ch, dTURNPeers, t.PeersDenied)
		counter(ch, dTURNDropped, t.RateLimited, "unauth_rate")
		counter(ch, dTURNDropped, t.BannedDropped, "banned")
	}
	if s.deps.Raft != nil {
		collectRaft(ch, s.deps.Raft())
	}
}

// collectState exports the figures read from the replicated state and this node's calls.
func (c *nodeCollector) collectState(ch chan<- prometheus.Metric) {
	s := c.s
	st := s.deps.Store.State()
	now := s.now()
	gauge(ch, dRooms, float64(len(st.Rooms())))
	gauge(ch, dBans, float64(len(st.Bans(now))))
	byNode := map[string]int{}
	for _, b := range st.AllBindings(now) {
		byNode[b.Node]++
	}
	for n, k := range byNode {
		gauge(ch, dRegistrations, float64(k), n)
	}
	calls := map[state.CallState]int{state.CallRinging: 0, state.CallAnswered: 0}
	// the calls GET /api/v1/calls lists with this node as owner: the ones it bridges, ringing
	// too, and any the state still says it owns (so metric and API never disagree)
	for _, call := range s.calls() {
		if s.cfg.NodeID == "" || call.Node == "" || call.Node == s.cfg.NodeID {
			calls[call.State]++
		}
	}
	for k, v := range calls {
		gauge(ch, dCalls, float64(v), string(k))
	}
}

// oneOf exports 1 for the label in labels that is active and 0 for the others.
func oneOf[T ~string](ch chan<- prometheus.Metric, d *prometheus.Desc, active T, labels ...T) {
	for _, l := range labels {
		v := 0.0
		if l == active {
			v = 1
		}
		gauge(ch, d, v, string(l))
	}
}

func collectMedia(ch chan<- prometheus.Metric, m media.Stats) {
	counter(ch, dRTPPackets, m.Packets)
	counter(ch, dRTPBytes, m.Bytes)
	counter(ch, dRTPLost, m.Lost)
	counter(ch, dRTPDropped, m.Dropped)
	gauge(ch, dSessions, float64(m.Sessions))
	gauge(ch, dStreams, float64(m.Streams))
	counter(ch, dTimeouts, m.Timeouts)
	mode := m.FastPath
	if mode == "" {
		mode = "userspace"
	}
	oneOf(ch, dFastPath, mode, "kernel", "userspace")
	gauge(ch, dPorts, float64(m.Pool.InUse), "in_use")
	gauge(ch, dPorts, float64(m.Pool.Draining), "draining")
	gauge(ch, dPorts, float64(m.Pool.Free), "free")
	counter(ch, dPortsRefused, m.Pool.Refused)
	gauge(ch, dSockDrops, float64(m.Pool.SocketDrops))
	counter(ch, dGSOMessages, m.Pool.GSOMessages)
	counter(ch, dGSODatagrams, m.Pool.GSODatagrams)
}

func collectRaft(ch chan<- prometheus.Metric, r cluster.Stats) {
	oneOf(ch, dRaftState, r.State, cluster.StateLeader, cluster.StateFollower, cluster.StateCandidate, cluster.StateUnknown)
	gauge(ch, dRaftTerm, float64(r.Term))
	gauge(ch, dRaftCommit, float64(r.CommitIndex))
	gauge(ch, dRaftApplied, float64(r.AppliedIndex))
	gauge(ch, dRaftApply, r.LastApplyLatency.Seconds())
	gauge(ch, dRaftPeers, float64(r.Peers))
	gauge(ch, dRaftContact, r.LastContact.Seconds())
	counter(ch, dRaftProposed, r.Proposed)
	counter(ch, dRaftDropped, r.Dropped)
	gauge(ch, dRaftQueued, float64(r.Queued))
}

// goCollector is the Go runtime's collector with, besides its defaults, the scheduler's
// latency histogram (go_sched_latencies_seconds): how long goroutines waited for a CPU once
// runnable. Every SIP message is handled on its own goroutine, so this is the time requests
// queue inside the node when it is short of CPU; its p99 nearing SIP's T1 (500 ms) means
// clients are about to retransmit into a node already behind.
func goCollector() prometheus.Collector {
	return collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/latencies:seconds$`)}))
}

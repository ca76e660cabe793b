package edge

import "github.com/prometheus/client_golang/prometheus"

var (
	dRefused = prometheus.NewDesc("portcullis_edge_refused_total",
		"Datagrams and connections the edge refused before any SIP parsing, by reason: source (banned or "+
			"denied source, datagram or connection), rate (datagram over its source's rate), oversize (datagram), not_sip (datagram), stun (datagram), "+
			"conn_cap (connection over the per-source cap), prefix_cap (connection over the per-IPv6-/64 cap), "+
			"global_cap (connection over the node's cap).",
		[]string{"reason"}, nil)
	dSocketDrops = prometheus.NewDesc("portcullis_edge_socket_drops_total",
		"Datagrams the kernel dropped from a SIP UDP socket's full receive queue (the node never saw "+
			"them), by listening address.",
		[]string{"listener"}, nil)
	dConnsClosed = prometheus.NewDesc("portcullis_edge_connections_closed_total",
		"TCP/TLS connections the edge closed, by reason: slow (a message took too long), idle, "+
			"too_large (oversized or badly framed message), rate (messages over the source's rate).",
		[]string{"reason"}, nil)
)

// Collector exports the counters of s to Prometheus.
func (s *Stats) Collector() prometheus.Collector { return statsCollector{s} }

type statsCollector struct{ s *Stats }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dRefused
	ch <- dConnsClosed
	ch <- dSocketDrops
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	count := func(d *prometheus.Desc, v uint64, reason string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), reason)
	}
	s := c.s
	count(dRefused, s.DroppedSource.Load(), "source")
	count(dRefused, s.DroppedRate.Load(), "rate")
	count(dRefused, s.DroppedOversize.Load(), "oversize")
	count(dRefused, s.DroppedNotSIP.Load(), "not_sip")
	count(dRefused, s.DroppedSTUN.Load(), "stun")
	count(dRefused, s.RefusedConns.Load(), "conn_cap")
	count(dRefused, s.RefusedPrefix.Load(), "prefix_cap")
	count(dRefused, s.RefusedGlobal.Load(), "global_cap")
	count(dConnsClosed, s.ClosedSlow.Load(), "slow")
	count(dConnsClosed, s.ClosedIdle.Load(), "idle")
	count(dConnsClosed, s.ClosedTooLarge.Load(), "too_large")
	count(dConnsClosed, s.ClosedRate.Load(), "rate")
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for listener, d := range socketDrops(conns) {
		count(dSocketDrops, d, listener)
	}
}

package sbc

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/turn"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
)

// startAdmin builds the admin API (HTTP/JSON, metrics, dashboard, token socket) on the node's
// store, cluster, calls and guard. It binds at once, so a port in use is an error at start.
func (n *Node) startAdmin() error {
	if n.cfg.Admin.Listen == "" {
		return nil
	}
	deps := admin.Deps{Store: n.store, Domain: n.cfg.SIP.Domain, Calls: n.calls, Health: n.health, Ready: n.readiness, Metrics: n.metrics,
		Collectors: []prometheus.Collector{n.edgeStats.Collector()}, Cluster: n.cluster, Doctor: n.doctorReport}
	if n.guard != nil {
		deps.Events = n.guard
	}
	if n.media != nil {
		m := n.media
		deps.Media = func() media.Stats { return m.Stats() }
	}
	if n.turn != nil {
		t := n.turn
		deps.TURN = func() turn.Stats { return t.Stats() }
	}
	ac := admin.FromConfig(n.cfg, n.cfg.Node.ID, n.log)
	if n.acme != nil && n.cfg.ACME.Admin {
		ac.TLSConfig = n.acme.TLSConfig("h2", "http/1.1")
	}
	srv, err := admin.New(ac, deps) // admin adds component=admin
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	n.closers = append(n.closers, srv)
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	n.admin = srv
	return nil
}

// serveAdmin serves the admin API until ctx ends.
func (n *Node) serveAdmin(ctx context.Context) {
	if n.admin == nil {
		return
	}
	n.goBackground(func() {
		if err := n.admin.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error("admin API stopped", "error", err)
		}
	})
}

// health is nil when the node serves: SIP is up and the cluster has a leader.
func (n *Node) health() error {
	n.mu.Lock()
	draining := n.draining
	n.mu.Unlock()
	if draining {
		return errors.New("draining")
	}
	if !n.isReady() {
		return errNotReady
	}
	if !n.cluster.Healthy() {
		return errors.New("no cluster leader known")
	}
	return nil
}

// callStarted and callEnded feed the call counters of the metrics.
func (n *Node) callStarted(dir state.Direction) {
	if n.metrics != nil {
		n.metrics.CallAttempt(string(dir))
	}
}

func (n *Node) callEnded(rec state.CallRecord) {
	if n.metrics == nil {
		return
	}
	outcome := "failed"
	switch {
	case rec.Status == 200 || (rec.Status >= 200 && rec.Status < 300):
		outcome = "answered"
	case rec.Status == 487:
		outcome = "cancelled"
	case rec.Status == 486 || rec.Status == 600:
		outcome = "busy"
	case rec.Status == 408 || rec.Status == 480:
		outcome = "no_answer"
	}
	n.metrics.CallOutcome(string(rec.Direction), outcome)
}

// AdminAddr is where the admin API listens ("" when disabled).
func (n *Node) AdminAddr() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.Addr().String()
}

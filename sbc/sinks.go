package sbc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
	"github.com/portcullis-sbc/portcullis/sbc/sinks"
)

// startSinks builds the configured sinks (records and events leaving the box) and registers
// their metrics; runSinks starts them.
func (n *Node) startSinks() error {
	if len(n.cfg.Sinks) == 0 {
		return nil
	}
	specs := make([]sinks.Spec, 0, len(n.cfg.Sinks))
	for _, s := range n.cfg.Sinks {
		sp, err := sinkSpec(s)
		if err != nil {
			return err
		}
		specs = append(specs, sp)
	}
	opts := sinks.Options{Node: n.cfg.Node.ID, Store: n.store, Logger: n.log.With("component", "sinks")}
	if n.cluster != nil {
		opts.Leader = n.cluster.RunLeaderTask
	}
	sh, err := sinks.New(specs, opts)
	if err != nil {
		return fmt.Errorf("sinks: %w", err)
	}
	if err := n.metrics.Registry().Register(sh); err != nil {
		sh.Close()
		return fmt.Errorf("sinks metrics: %w", err)
	}
	n.sinks = sh
	return nil
}

// runSinks ships until ctx ends; the sinks' connections and files are closed after.
func (n *Node) runSinks(ctx context.Context) {
	if n.sinks == nil {
		return
	}
	var events <-chan guard.Event
	if n.guard != nil {
		events = n.guard.Subscribe(ctx)
	}
	n.sinks.Run(ctx, events)
	n.goBackground(func() {
		<-ctx.Done()
		n.sinks.Wait()
		_ = n.sinks.Close()
	})
}

// Sinks is the node's shipper of records and events (nil: no sinks configured).
func (n *Node) Sinks() *sinks.Shipper { return n.sinks }

func sinkSpec(s config.Sink) (sinks.Spec, error) {
	sp := sinks.Spec{
		Name: s.Name, Kind: sinks.Kind(s.Type), Records: s.Ships("records"), Events: s.Ships("events"),
		Queue: s.Queue, Batch: s.Batch, RetryMin: s.RetryMin.D(), RetryMax: s.RetryMax.D(), Timeout: s.Timeout.D(),
		URL: s.URL, Secret: []byte(s.Secret), SignatureHeader: s.SignatureHeader,
		Path: s.Path, MaxBytes: s.MaxSize,
	}
	sp.Keep = 5
	if s.Keep != nil {
		sp.Keep = *s.Keep
	}
	if s.Type == "syslog" {
		sp.Network, sp.Address = s.SyslogAddr()
		sp.Facility, sp.MaxMessage = s.FacilityCode(), s.MaxMessageSize
	}
	if sp.Network == "tls" || s.CA != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
		if s.CA != "" {
			pem, err := os.ReadFile(s.CA)
			if err != nil {
				return sp, fmt.Errorf("sink %q: ca: %w", s.Name, err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return sp, fmt.Errorf("sink %q: ca %s: no PEM certificate", s.Name, s.CA)
			}
		}
		sp.TLS = cfg
	}
	return sp, nil
}

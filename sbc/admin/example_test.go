package admin_test

import (
	"context"
	"log/slog"
	"os"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// A node wires the admin server once its parts exist. With a cluster, pass the *cluster.Node
// as Store and Cluster, the *guard.Guard as Events, the *b2bua.Engine as Calls, and the media
// manager's and TURN server's Stats methods; create the Metrics first so that the B2BUA and
// the registrar can count into them before the server exists.
func ExampleNew() {
	cfg := config.Default()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	metrics := admin.NewMetrics()
	store := metrics.InstrumentStore(state.NewLocal()) // times every write

	srv, err := admin.New(admin.FromConfig(cfg, "edge1", log), admin.Deps{
		Store:   store,
		Domain:  cfg.SIP.Domain,
		Metrics: metrics,
		Health:  func() error { return nil }, // e.g. "draining" during SIGTERM
		// Cluster: node, Events: guard, Calls: engine,
		// Media: mediaManager.Stats, TURN: turnServer.Stats,
	})
	if err != nil {
		log.Error("admin", "error", err)
		return
	}
	if err := srv.Listen(); err != nil { // fail at start on a busy port
		log.Error("admin", "error", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx)

	metrics.CallAttempt("inbound")             // the B2BUA, when an INVITE passed the guard
	metrics.CallOutcome("inbound", "answered") // and when the call ended
	metrics.RegisterResult("ok")               // the registrar, per answered REGISTER

	cancel() // or srv.Close()
}

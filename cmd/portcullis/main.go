// Command portcullis is the Portcullis session border controller: `serve` runs a node, `ctl`
// drives a running node through its admin API, `token` and `cluster` manage credentials, `check`
// validates a config file, `version` prints the version. Flags, wiring and signals only: the
// logic lives in the sbc, media and cluster packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/internal/logging"
	"github.com/portcullis-sbc/portcullis/sbc"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: portcullis <command> [flags]

commands:
  serve [--config FILE]   run a node (no config: built-in defaults, single node, data in ./data)
  check --config FILE     validate a config file and exit
  health [--config FILE]  exit 0 if the node on this host answers SIP (HEALTHCHECK, probes)
  ctl <area> <action>     drive a running node through its admin API (see ctl --help)
  doctor [--config FILE]  check a running node as an operator would and say what to fix
  token create --scope read|admin --name NAME
                          create an admin API token on this node (through its local socket)
  cluster init|join-token manage cluster certificates and join tokens (see --help)
  version                 print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sbc.Version = version
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "check":
		return check(args[1:], stdout, stderr)
	case "health":
		return health(args[1:], stdout, stderr)
	case "ctl":
		return runCtl(args[1:], stdout, stderr)
	case "doctor":
		return runDoctor(args[1:], stdout, stderr)
	case "token":
		return runToken(args[1:], stdout, stderr)
	case "cluster":
		return cluster.RunCLI(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "portcullis", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "portcullis: unknown command %q\n%s", args[0], usage)
	return 2
}

// loadConfig parses --config and runs config.Check, the one validation of every command; it
// returns the warnings for the caller to print or log.
func loadConfig(name string, args []string, stderr io.Writer) (config.Config, []config.Warning, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file (default: built-in defaults)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, nil, false
	}
	cfg, warns, err := config.Check(*path, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: config: %v\n", err)
		return cfg, nil, false
	}
	return cfg, warns, true
}

func check(args []string, stdout, stderr io.Writer) int {
	cfg, warns, ok := loadConfig("check", args, stderr)
	if !ok {
		return 1
	}
	fmt.Fprintf(stdout, "SIP domain and digest realm: %s\n", cfg.SIP.DomainSource())
	for _, w := range warns {
		fmt.Fprintf(stderr, "portcullis: config: warning: %s\n", w)
	}
	if len(warns) > 0 {
		fmt.Fprintf(stdout, "config OK, with %d warning(s)\n", len(warns))
		return 0
	}
	fmt.Fprintln(stdout, "config OK")
	return 0
}

func serve(args []string, stderr io.Writer) int {
	cfg, warns, ok := loadConfig("serve", args, stderr)
	if !ok {
		return 1
	}
	log := logging.New(stderr, cfg.Log.Level, cfg.Log.Format)
	for _, w := range warns {
		log.Warn("config: " + w.String())
	}
	startPprof(log)
	stopWithGoRun(log)
	tuneRuntime(log)
	node, err := sbc.New(cfg, log)
	if err != nil {
		log.Error("cannot build node", "error", err)
		return 1
	}
	// Catch the stop signals before anything can be seen to run: once the banner is out a signal
	// must drain or stop the node, never kill it with the default action.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := node.Start(ctx); err != nil {
		log.Error("cannot start node", "error", err)
		return 1
	}
	fmt.Fprint(stderr, node.Banner())
	sig := <-sigs
	if sig == syscall.SIGTERM {
		// Drain: refuse new calls, wait for active ones (bounded); a second signal stops at once.
		log.Info("SIGTERM: draining", "timeout", cfg.Node.DrainTimeout.D())
		dctx, dcancel := context.WithTimeout(ctx, cfg.Node.DrainTimeout.D())
		go func() {
			select {
			case <-sigs:
				log.Info("second signal: stopping now")
				dcancel()
			case <-dctx.Done():
			}
		}()
		node.Drain(dctx)
		dcancel()
	} else {
		log.Info("SIGINT: stopping now")
	}
	cancel()
	if err := node.Close(); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("shutdown", "error", err)
	}
	log.Info("stopped")
	return 0
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
	"github.com/portcullis-sbc/portcullis/sbc/admin/client"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

const tokenUsage = `usage: portcullis token create --scope read|admin --name NAME [flags]
       portcullis token list [flags]
       portcullis token revoke ID [flags]

Manages admin API tokens through the node's local socket (DATA_DIR/admin.sock), which only the
node's user (or root) may open: this is how the first token is made. The secret of a new token
is printed once, alone on stdout, so that TOKEN=$(portcullis token create ...) works.

Name the node as you started it: --config FILE (its node.data_dir is used, and PORTCULLIS_*
variables apply as for serve) or --data-dir DIR; without either, ./data of the current
directory. Examples:
  portcullis token create --scope admin --name ops --config /etc/portcullis/portcullis.yaml
  portcullis token create --scope read --name dashboard --data-dir /var/lib/portcullis

flags:
`

// tokenFlags are the flags of `portcullis token`.
type tokenFlags struct {
	scope, name, dataDir, cfgPath, sock, output *string
}

func newTokenFlags(fs *flag.FlagSet) tokenFlags {
	return tokenFlags{
		scope:   fs.String("scope", "", "create: read or admin"),
		name:    fs.String("name", "", "create: who or what uses the token"),
		dataDir: fs.String("data-dir", "", "the node's data dir (default: node.data_dir of --config, else ./data)"),
		cfgPath: fs.String("config", "", "the node's config file, to find its data dir"),
		sock:    fs.String("socket", "", "the token socket (default: DATA_DIR/"+admin.SocketName+")"),
		output:  fs.String("o", "table", "output: table or json"),
	}
}

// runToken runs `portcullis token ARGS` and returns the exit status.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := newTokenFlags(fs)
	help := false
	fs.Usage = func() {
		w := stderr
		if help {
			w = stdout
		}
		fmt.Fprint(w, tokenUsage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	verb := args[0]
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "help" && a == verb {
			help = true
			fs.Usage()
			return 0
		}
	}
	c := &ctl{stdout: stdout, stderr: stderr, output: "table", usage: fs.Usage}
	pos, err := c.parse(fs, args[1:], 0, 1, "token create|list|revoke")
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "portcullis token: %v\n", err)
		return 2
	}
	if *f.output != "table" && *f.output != "json" {
		fmt.Fprintln(stderr, "portcullis token: -o must be table or json")
		return 2
	}
	call, err := f.client()
	if err != nil {
		fmt.Fprintf(stderr, "portcullis token: %v\n", err)
		return 1
	}
	c.output = *f.output
	if status, ok := c.runTokenVerb(verb, pos, f, call); ok {
		return status
	}
	fs.Usage()
	return 2
}

// tokenCall sends one request to the token socket and returns the response body.
type tokenCall func(method, path string, body any) ([]byte, error)

// client returns a caller of the node's token socket: --socket, else the socket in the data dir
// (--data-dir, else node.data_dir of --config).
func (f tokenFlags) client() (tokenCall, error) {
	path := *f.sock
	if path == "" {
		dir := *f.dataDir
		if dir == "" {
			cfg, err := config.Load(*f.cfgPath, os.Environ())
			if err != nil {
				return nil, fmt.Errorf("config: %w", err)
			}
			dir = cfg.Node.DataDir
		}
		path = filepath.Join(dir, admin.SocketName)
	}
	cl, err := client.New(client.Config{API: "http://portcullis", Prefix: "/v1",
		Dial: func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "unix", path) }})
	if err != nil {
		return nil, err
	}
	return func(method, p string, body any) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := cl.Do(ctx, method, p, body)
		var ce *client.ConnError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("cannot reach the node's token socket %s: %w\n"+
				"(is `portcullis serve` running with this data dir, and are you its user or root? Name the node's data dir "+
				"with --config FILE, the file serve runs with, or --data-dir DIR)", path, ce.Err)
		}
		return b, err
	}, nil
}

// runTokenVerb runs create, list or revoke with their positional arguments pos; ok is false
// for anything else (a usage error).
func (c *ctl) runTokenVerb(verb string, pos []string, f tokenFlags, call tokenCall) (status int, ok bool) {
	switch {
	case verb == "create" && len(pos) == 0:
		if *f.scope == "" || *f.name == "" {
			fmt.Fprintln(c.stderr, "portcullis token: create needs --scope read|admin and --name NAME")
			return 2, true
		}
		raw, err := call("POST", "/tokens", admin.TokenInput{Scope: state.Scope(*f.scope), Name: *f.name})
		if err == nil {
			var tc admin.TokenCreated
			if err = json.Unmarshal(raw, &tc); err == nil {
				err = printSecret(c.stdout, c.stderr, *f.output, raw, tc)
			}
		}
		return exitFor(c.stderr, err), true
	case verb == "list" && len(pos) == 0:
		raw, err := call("GET", "/tokens", nil)
		if err == nil {
			var l struct{ Items []admin.TokenView }
			if err = json.Unmarshal(raw, &l); err == nil {
				err = c.show(raw, func(w *tabwriter.Writer) { printTokens(w, l.Items) })
			}
		}
		return exitFor(c.stderr, err), true
	case verb == "revoke" && len(pos) == 1:
		_, err := call("DELETE", "/tokens/"+esc(pos[0]), nil)
		if err == nil {
			err = c.done("token %s revoked", pos[0])
		}
		return exitFor(c.stderr, err), true
	}
	return 0, false
}

func exitFor(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "portcullis token: %v\n", err)
	return 1
}

// printSecret shows a new token: with -o json the whole answer, else the secret alone on
// stdout and the explanation on stderr.
func printSecret(stdout, stderr io.Writer, output string, raw []byte, tc admin.TokenCreated) error {
	if output == "json" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		_, err := fmt.Fprintln(stdout, buf.String())
		return err
	}
	fmt.Fprintf(stderr, "token %s (%s, scope %s) created; its secret is shown this once:\n", tc.ID, tc.Name, tc.Scope)
	_, err := fmt.Fprintln(stdout, tc.Secret)
	fmt.Fprintln(stderr, "use it with: export PORTCULLIS_TOKEN=<the secret above>")
	return err
}

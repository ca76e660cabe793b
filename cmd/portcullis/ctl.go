package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/admin"
	"github.com/portcullis-sbc/portcullis/sbc/admin/client"
)

// ctlStdin is where --password-stdin reads (tests replace it).
var ctlStdin io.Reader = os.Stdin

const ctlUsage = `usage: portcullis ctl [flags] AREA COMMAND [args] [flags]

Drives a running node through its admin API. Flags may come before or after the command.

areas and commands:
  rooms list | show NAME | delete NAME
  rooms create NAME (--generate | --password-stdin | --password P | --ha1-md5 H [--ha1-sha256 H])
                    [--inbound open|allowlist|dnd] [--allow a,b] [--dnd-code N]
                    [--auto-answer block|allow] [--drop-in deny|allow]
  rooms update NAME [--inbound ..] [--allow ..] [--dnd-code ..] [--auto-answer ..] [--drop-in ..]
  rooms passwd NAME (--generate | --password-stdin | --password P) [--drop-registrations]
  registrations [--room NAME]
  calls list [--room NAME] | show ID | hangup ID
  records [--room NAME] [--reason R] [--since T] [--until T] [--limit N] [--cursor C] [--all] [--oldest]
                        newest first (--oldest: oldest first)
  bans list | show PREFIX | lift PREFIX (or remove PREFIX)
  bans add PREFIX [--duration 1h] [--reason TEXT] [--force]
  sites                 addresses rooms registered from: their rooms, budget, demotion
  lists show | set [--allow a,b] [--deny a,b] [--scanner-ua a,b]
  lists add|remove allow|deny|scanner-ua ENTRY...
  events [--rule R] [--room NAME] [--source CIDR] [--since T] [--limit N] [--follow [--count N]]
  cluster members | leader | join ID HOST:PORT | remove ID
  tokens list | create --scope read|admin --name NAME | revoke ID
  audit [--limit N] [--cursor C]
  health

T is an RFC 3339 time or a duration ago (90m, 24h).

flags:
`

// ctl is one invocation of `portcullis ctl`.
type ctl struct {
	api, token, tokenFile, ca, output string
	timeout                           time.Duration
	stdout, stderr                    io.Writer
	client                            *client.Client
	usage                             func() // the -h text when not ctl's (portcullis token)
}

// usageError is a command line mistake (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// runCtl runs `portcullis ctl ARGS` and returns the exit status: 0 done, 1 the API or the
// connection failed, 2 bad usage.
func runCtl(args []string, stdout, stderr io.Writer) int {
	c := &ctl{stdout: stdout, stderr: stderr}
	fs := c.flags("ctl")
	fs.Usage = func() {
		fmt.Fprint(stderr, ctlUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	err := c.dispatch(rest[0], rest[1:])
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "portcullis ctl: %s\n(see portcullis ctl --help)\n", ue.msg)
		return 2
	}
	fmt.Fprintf(stderr, "portcullis ctl: %v\n", err)
	return 1
}

// flags returns a flag set with the connection and output flags, so that they are accepted
// before the area and after the command alike.
func (c *ctl) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	def := os.Getenv("PORTCULLIS_API")
	if def == "" {
		def = "http://" + admin.DefaultListen
	}
	if c.api == "" {
		c.api, c.token, c.output, c.timeout = def, os.Getenv("PORTCULLIS_TOKEN"), "table", 30*time.Second
	}
	fs.StringVar(&c.api, "api", c.api, "admin API URL (env PORTCULLIS_API)")
	fs.StringVar(&c.token, "token", c.token, "API token (env PORTCULLIS_TOKEN; prefer the environment: flags show in ps)")
	fs.StringVar(&c.tokenFile, "token-file", c.tokenFile, "read the API token from this file")
	fs.StringVar(&c.ca, "ca", c.ca, "PEM file of the CA that signed the API's certificate (default: system roots)")
	fs.StringVar(&c.output, "o", c.output, "output: table or json")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "request timeout")
	return fs
}

// parse parses a subcommand's flags, which may be interleaved with its arguments, and checks
// the number of arguments.
func (c *ctl) parse(fs *flag.FlagSet, args []string, min, max int, usage string) ([]string, error) {
	fs.Usage = func() { fmt.Fprintf(c.stderr, "usage: portcullis ctl %s\n", usage); fs.PrintDefaults() }
	if c.usage != nil {
		fs.Usage = c.usage
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < min || max >= 0 && len(pos) > max {
		return nil, usagef("usage: portcullis ctl %s", usage)
	}
	if c.output != "table" && c.output != "json" {
		return nil, usagef("-o must be table or json")
	}
	return pos, nil
}

func (c *ctl) dispatch(area string, args []string) error {
	verb := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	type cmd func([]string) error
	table := map[string]map[string]cmd{
		"rooms": {"list": c.roomsList, "show": c.roomsShow, "create": c.roomsCreate, "update": c.roomsUpdate,
			"delete": c.roomsDelete, "passwd": c.roomsPasswd},
		"registrations": {"": c.registrations, "list": c.registrations},
		"calls":         {"list": c.callsList, "": c.callsList, "show": c.callsShow, "hangup": c.callsHangup},
		"records":       {"": c.records, "list": c.records},
		"bans":          {"list": c.bansList, "": c.bansList, "show": c.bansShow, "add": c.bansAdd, "lift": c.bansLift, "remove": c.bansLift},
		"sites":         {"": c.sitesList, "list": c.sitesList},
		"lists":         {"show": c.listsShow, "": c.listsShow, "set": c.listsSet, "add": c.listsEdit(true), "remove": c.listsEdit(false)},
		"events":        {"": c.events, "list": c.events},
		"cluster":       {"members": c.clusterMembers, "leader": c.clusterLeader, "join": c.clusterJoin, "remove": c.clusterRemove},
		"tokens":        {"list": c.tokensList, "": c.tokensList, "create": c.tokensCreate, "revoke": c.tokensRevoke},
		"audit":         {"": c.audit, "list": c.audit},
		"health":        {"": c.health},
	}
	verbs, ok := table[area]
	if !ok {
		return usagef("unknown area %q", area)
	}
	run, ok := verbs[verb]
	if !ok {
		var names []string
		for v := range verbs {
			if v != "" {
				names = append(names, v)
			}
		}
		slices.Sort(names)
		if verb == "" {
			return usagef("%s needs a command: %s", area, strings.Join(names, ", "))
		}
		return usagef("unknown command %q for %s (commands: %s)", verb, area, strings.Join(names, ", "))
	}
	return run(args)
}

// ---- HTTP -----------------------------------------------------------------------------------

func (c *ctl) connect() error {
	if c.client != nil {
		return nil
	}
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return err
		}
		c.token = strings.TrimSpace(string(b))
	}
	if c.token == "" {
		return usagef("no API token: set PORTCULLIS_TOKEN (or --token-file); create one with `portcullis token create --scope admin --name NAME --config FILE` (or --data-dir DIR) on the node")
	}
	cl, err := client.New(client.Config{API: c.api, Token: c.token, CAFile: c.ca})
	if errors.Is(err, client.ErrBadURL) {
		return usagef("--api %q must be http(s)://HOST:PORT", c.api)
	}
	if err != nil {
		return err
	}
	c.client = cl
	return nil
}

// reach names the API in an error that got no answer at all.
func (c *ctl) reach(err error) error {
	var ce *client.ConnError
	if errors.As(err, &ce) {
		api := c.api
		if !strings.Contains(api, "://") {
			api = "http://" + api
		}
		return fmt.Errorf("cannot reach the admin API at %s: %w", strings.TrimSuffix(api, "/"), ce.Err)
	}
	return err
}

// get decodes a GET into v and returns the raw body.
func (c *ctl) get(path string, v any) ([]byte, error) {
	if err := c.connect(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	b, err := c.client.Get(ctx, path, v)
	return b, c.reach(err)
}

// send makes a write and decodes the answer into v (when not nil and there is one).
func (c *ctl) send(method, path string, body, v any) ([]byte, error) {
	if err := c.connect(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	b, err := c.client.Send(ctx, method, path, body, v)
	return b, c.reach(err)
}

// show prints raw JSON with -o json, else runs table.
func (c *ctl) show(raw []byte, table func(w *tabwriter.Writer)) error {
	if c.output == "json" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := c.stdout.Write(buf.Bytes())
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

// done reports a write that answered nothing worth printing.
func (c *ctl) done(format string, args ...any) error {
	if c.output == "json" {
		return nil
	}
	_, err := fmt.Fprintf(c.stdout, format+"\n", args...)
	return err
}

func row(w io.Writer, cells ...any) {
	for i, v := range cells {
		if i > 0 {
			fmt.Fprint(w, "\t")
		}
		switch x := v.(type) {
		case time.Time:
			if x.IsZero() {
				fmt.Fprint(w, "-")
			} else {
				fmt.Fprint(w, x.Local().Format("2006-01-02 15:04:05"))
			}
		case string:
			if x == "" {
				x = "-"
			}
			fmt.Fprint(w, x)
		default:
			fmt.Fprint(w, x)
		}
	}
	fmt.Fprintln(w)
}

func esc(s string) string { return url.PathEscape(s) }

// query builds a query string from name/value pairs, leaving out empty values.
func query(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/relay"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
	"github.com/portcullis-sbc/portcullis/sbc/admin/client"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
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

// ---- rooms ----------------------------------------------------------------------------------

type roomFlags struct {
	inbound, allow, autoAnswer, dropIn string
	dndCode                            int
	password, ha1md5, ha1sha256        string
	passwordStdin, generate, dropRegs  bool
}

func (c *ctl) roomFlagSet(name string, rf *roomFlags, policy, creds bool) *flag.FlagSet {
	fs := c.flags(name)
	if policy {
		fs.StringVar(&rf.inbound, "inbound", "", "inbound policy: open, allowlist or dnd")
		fs.StringVar(&rf.allow, "allow", "", "comma-separated caller patterns (user@domain globs, *@domain, domain, IP, CIDR)")
		fs.IntVar(&rf.dndCode, "dnd-code", 0, "SIP status for refused calls in dnd mode (0: drop silently)")
		fs.StringVar(&rf.autoAnswer, "auto-answer", "", "block or allow auto-answer headers from callers")
		fs.StringVar(&rf.dropIn, "drop-in", "", "deny or allow a second inbound call while in a call")
	}
	if creds {
		fs.StringVar(&rf.password, "password", "", "the room's SIP password (visible in ps: prefer --password-stdin)")
		fs.BoolVar(&rf.passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
		fs.BoolVar(&rf.generate, "generate", false, "generate a password and print it once")
	}
	return fs
}

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	m := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}

func (rf *roomFlags) policy(set map[string]bool, in *admin.RoomInput) {
	if set["inbound"] {
		in.Inbound = &rf.inbound
	}
	if set["allow"] {
		a := splitList(rf.allow)
		if a == nil {
			a = []string{}
		}
		in.Allow = &a
	}
	if set["dnd-code"] {
		in.DNDCode = &rf.dndCode
	}
	if set["auto-answer"] {
		in.AutoAnswer = &rf.autoAnswer
	}
	if set["drop-in"] {
		in.DropIn = &rf.dropIn
	}
}

func (rf *roomFlags) credentials(set map[string]bool) (admin.CredentialsInput, error) {
	var in admin.CredentialsInput
	if set["password"] {
		in.Password = &rf.password
	}
	if rf.passwordStdin {
		line, err := bufio.NewReader(ctlStdin).ReadString('\n')
		if err != nil && line == "" {
			return in, fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		in.Password = &pw
	}
	if set["ha1-md5"] {
		in.HA1MD5 = &rf.ha1md5
	}
	if set["ha1-sha256"] {
		in.HA1SHA256 = &rf.ha1sha256
	}
	in.Generate = rf.generate
	in.DropRegistrations = rf.dropRegs
	return in, nil
}

func (c *ctl) roomsList(args []string) error {
	if _, err := c.parse(c.flags("rooms list"), args, 0, 0, "rooms list"); err != nil {
		return err
	}
	var l struct{ Items []admin.RoomView }
	raw, err := c.get("/rooms", &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "NAME", "INBOUND", "REGISTERED", "ALLOW", "AUTO-ANSWER", "DROP-IN", "UPDATED")
		for _, r := range l.Items {
			row(w, r.Name, string(r.Inbound), r.Registrations, strings.Join(r.Allow, ","), r.AutoAnswer, r.DropIn, r.Updated)
		}
	})
}

func (c *ctl) roomsShow(args []string) error {
	pos, err := c.parse(c.flags("rooms show"), args, 1, 1, "rooms show NAME")
	if err != nil {
		return err
	}
	var r admin.RoomView
	raw, err := c.get("/rooms/"+esc(pos[0]), &r)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		creds := []string{}
		if r.Credentials.MD5 {
			creds = append(creds, "MD5")
		}
		if r.Credentials.SHA256 {
			creds = append(creds, "SHA-256")
		}
		row(w, "name:", r.Name)
		row(w, "inbound:", string(r.Inbound))
		row(w, "allow:", strings.Join(r.Allow, ", "))
		row(w, "dnd code:", r.DNDCode)
		row(w, "auto-answer:", r.AutoAnswer)
		row(w, "drop-in:", r.DropIn)
		row(w, "credentials:", strings.Join(creds, ", "))
		row(w, "updated:", r.Updated)
		row(w, "registrations:", r.Registrations)
		for _, b := range r.Bindings {
			row(w, "", b.Contact+" from "+b.Source+" ("+b.Transport+", node "+b.Node+", expires "+b.Expires.Local().Format(time.TimeOnly)+")")
		}
	})
}

func (c *ctl) printCreated(raw []byte, rc admin.RoomCreated, verb string) error {
	if c.output == "json" {
		return c.show(raw, nil)
	}
	fmt.Fprintf(c.stdout, "room %s %s\n", rc.Room.Name, verb)
	if rc.Password != "" {
		fmt.Fprintf(c.stdout, "password (shown once): %s\n", rc.Password)
	}
	return nil
}

func (c *ctl) roomsCreate(args []string) error {
	var rf roomFlags
	fs := c.roomFlagSet("rooms create", &rf, true, true)
	fs.StringVar(&rf.ha1md5, "ha1-md5", "", "hex MD5(name:domain:password) instead of a password")
	fs.StringVar(&rf.ha1sha256, "ha1-sha256", "", "hex SHA-256(name:domain:password) instead of a password")
	pos, err := c.parse(fs, args, 1, 1, "rooms create NAME (--generate | --password-stdin | --password P | --ha1-md5 H) [policy flags]")
	if err != nil {
		return err
	}
	set := setFlags(fs)
	cr, err := rf.credentials(set)
	if err != nil {
		return err
	}
	in := admin.RoomInput{Name: &pos[0], Password: cr.Password, HA1MD5: cr.HA1MD5, HA1SHA256: cr.HA1SHA256, Generate: cr.Generate}
	rf.policy(set, &in)
	var rc admin.RoomCreated
	raw, err := c.send("POST", "/rooms", in, &rc)
	if err != nil {
		return err
	}
	return c.printCreated(raw, rc, "created")
}

func (c *ctl) roomsUpdate(args []string) error {
	var rf roomFlags
	fs := c.roomFlagSet("rooms update", &rf, true, false)
	pos, err := c.parse(fs, args, 1, 1, "rooms update NAME [--inbound ..] [--allow ..] [--dnd-code ..] [--auto-answer ..] [--drop-in ..]")
	if err != nil {
		return err
	}
	var in admin.RoomInput
	rf.policy(setFlags(fs), &in)
	raw, err := c.send("PATCH", "/rooms/"+esc(pos[0]), in, nil)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.show(raw, nil)
	}
	return c.done("room %s updated", pos[0])
}

func (c *ctl) roomsDelete(args []string) error {
	pos, err := c.parse(c.flags("rooms delete"), args, 1, 1, "rooms delete NAME")
	if err != nil {
		return err
	}
	if _, err := c.send("DELETE", "/rooms/"+esc(pos[0]), nil, nil); err != nil {
		return err
	}
	return c.done("room %s deleted", pos[0])
}

func (c *ctl) roomsPasswd(args []string) error {
	var rf roomFlags
	fs := c.roomFlagSet("rooms passwd", &rf, false, true)
	fs.StringVar(&rf.ha1md5, "ha1-md5", "", "hex MD5(name:domain:password) instead of a password")
	fs.StringVar(&rf.ha1sha256, "ha1-sha256", "", "hex SHA-256(name:domain:password) instead of a password")
	fs.BoolVar(&rf.dropRegs, "drop-registrations", false, "also remove the room's current registrations")
	pos, err := c.parse(fs, args, 1, 1, "rooms passwd NAME (--generate | --password-stdin | --password P | --ha1-md5 H) [--drop-registrations]")
	if err != nil {
		return err
	}
	in, err := rf.credentials(setFlags(fs))
	if err != nil {
		return err
	}
	var rc admin.RoomCreated
	raw, err := c.send("POST", "/rooms/"+esc(pos[0])+"/credentials", in, &rc)
	if err != nil {
		return err
	}
	return c.printCreated(raw, rc, "credentials changed")
}

// ---- registrations and calls ----------------------------------------------------------------

func (c *ctl) registrations(args []string) error {
	fs := c.flags("registrations")
	room := fs.String("room", "", "only this room's registrations")
	if _, err := c.parse(fs, args, 0, 0, "registrations [--room NAME]"); err != nil {
		return err
	}
	var l struct{ Items []state.Binding }
	raw, err := c.get("/registrations"+query("room", *room), &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "ROOM", "CONTACT", "SOURCE", "TRANSPORT", "NODE", "USER-AGENT", "EXPIRES")
		for _, b := range l.Items {
			row(w, b.Room, b.Contact, b.Source, b.Transport, b.Node, b.UserAgent, b.Expires)
		}
	})
}

func (c *ctl) callsList(args []string) error {
	fs := c.flags("calls list")
	room := fs.String("room", "", "only this room's calls")
	if _, err := c.parse(fs, args, 0, 0, "calls list [--room NAME]"); err != nil {
		return err
	}
	var l struct{ Items []state.Call }
	raw, err := c.get("/calls"+query("room", *room), &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "ID", "ROOM", "DIRECTION", "FROM", "TO", "STATE", "NODE", "STARTED")
		for _, k := range l.Items {
			row(w, k.ID, k.Room, string(k.Direction), k.From, k.To, string(k.State), k.Node, k.Started)
		}
	})
}

func (c *ctl) callsShow(args []string) error {
	pos, err := c.parse(c.flags("calls show"), args, 1, 1, "calls show ID")
	if err != nil {
		return err
	}
	var d struct {
		state.Call
		Media json.RawMessage `json:"media"`
	}
	raw, err := c.get("/calls/"+esc(pos[0]), &d)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "id:", d.ID)
		row(w, "room:", d.Room)
		row(w, "direction:", string(d.Direction))
		row(w, "from:", d.From)
		row(w, "to:", d.To)
		row(w, "source:", d.Source)
		row(w, "state:", string(d.State))
		row(w, "node:", d.Node)
		row(w, "started:", d.Started)
		row(w, "answered:", d.Answered)
		if streams := mediaStreams(d.Media); len(streams) > 0 {
			w.Flush()
			fmt.Fprintln(c.stdout, "media:")
			mw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			row(mw, "  STREAM", "DIRECTION", "PACKETS", "BYTES", "LOST", "JITTER", "FROM", "RELAY PORT")
			for _, st := range streams {
				name := fmt.Sprintf("%d %s", st.Index, st.Media)
				if st.Content != "" {
					name += " (" + st.Content + ")"
				}
				for _, dir := range []struct {
					label string
					s     relay.DirectionStats
					from  netip.AddrPort
					port  int
				}{{"a->b", st.AToB, st.LatchedA, st.PortA}, {"b->a", st.BToA, st.LatchedB, st.PortB}} {
					from := "not latched"
					if dir.from.IsValid() {
						from = dir.from.String()
					}
					row(mw, "  "+name, dir.label, dir.s.Packets, dir.s.Bytes, dir.s.Lost,
						strconv.FormatFloat(dir.s.JitterMs, 'f', 1, 64)+" ms", from, dir.port)
				}
			}
			mw.Flush()
		} else if len(d.Media) > 0 && string(d.Media) != "null" {
			row(w, "media:", "(unreadable: see -o json)")
		}
	})
}

// mediaStreams decodes a call's media statistics (GET /calls/{id} "media"); nil when there are
// none or they are not streams.
func mediaStreams(raw json.RawMessage) []media.StreamStats {
	var streams []media.StreamStats
	if len(raw) == 0 || json.Unmarshal(raw, &streams) != nil {
		return nil
	}
	return streams
}

func (c *ctl) callsHangup(args []string) error {
	pos, err := c.parse(c.flags("calls hangup"), args, 1, 1, "calls hangup ID")
	if err != nil {
		return err
	}
	if _, err := c.send("DELETE", "/calls/"+esc(pos[0]), nil, nil); err != nil {
		return err
	}
	return c.done("call %s hung up", pos[0])
}

func (c *ctl) records(args []string) error {
	fs := c.flags("records")
	room := fs.String("room", "", "only this room's records")
	reason := fs.String("reason", "", "only records with this end reason")
	since := fs.String("since", "", "ended at or after (RFC 3339 or a duration ago)")
	until := fs.String("until", "", "ended before (RFC 3339 or a duration ago)")
	limit := fs.Int("limit", 0, "page size (1-1000, default 100)")
	cur := fs.String("cursor", "", "continue after this cursor (printed after a page)")
	all := fs.Bool("all", false, "fetch every page")
	oldest := fs.Bool("oldest", false, "oldest first (default: newest first)")
	if _, err := c.parse(fs, args, 0, 0, "records [--room NAME] [--reason R] [--since T] [--until T] [--limit N] [--cursor C] [--all] [--oldest]"); err != nil {
		return err
	}
	lim := ""
	if *limit != 0 {
		lim = strconv.Itoa(*limit)
	}
	type page struct {
		Items      []json.RawMessage `json:"items"`
		NextCursor string            `json:"next_cursor"`
	}
	order := "newest"
	if *oldest {
		order = "oldest"
	}
	var items []json.RawMessage
	next := *cur
	for {
		var p page
		if _, err := c.get("/records"+query("room", *room, "end_reason", *reason, "since", *since, "until", *until,
			"order", order, "limit", lim, "cursor", next), &p); err != nil {
			return err
		}
		items = append(items, p.Items...)
		next = p.NextCursor
		if !*all || next == "" {
			break
		}
	}
	out, err := json.Marshal(page{Items: append([]json.RawMessage{}, items...), NextCursor: next})
	if err != nil {
		return err
	}
	err = c.show(out, func(w *tabwriter.Writer) {
		row(w, "SEQ", "ENDED", "ROOM", "DIRECTION", "FROM", "TO", "DURATION", "STATUS", "REASON")
		for _, it := range items {
			var r state.CallRecord
			if json.Unmarshal(it, &r) == nil {
				row(w, r.Seq, r.Ended, r.Room, string(r.Direction), r.From, r.To, r.Duration.Round(time.Second).String(), r.Status, r.EndReason)
			}
		}
	})
	if err == nil && c.output == "table" && next != "" {
		more := "older"
		if *oldest {
			more = "newer"
		}
		fmt.Fprintf(c.stderr, "%s records: --cursor %s (or --all)\n", more, next)
	}
	return err
}

// ---- guard ----------------------------------------------------------------------------------

func (c *ctl) bansList(args []string) error {
	if _, err := c.parse(c.flags("bans list"), args, 0, 0, "bans list"); err != nil {
		return err
	}
	var l struct{ Items []state.Ban }
	raw, err := c.get("/guard/bans", &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "PREFIX", "RULE", "STRIKES", "UNTIL", "NODE", "REASON")
		for _, b := range l.Items {
			row(w, b.Prefix.String(), b.Rule, b.Strikes, b.Until, b.Node, b.Reason)
		}
	})
}

func (c *ctl) sitesList(args []string) error {
	if _, err := c.parse(c.flags("sites"), args, 0, 0, "sites"); err != nil {
		return err
	}
	var l struct{ Items []guard.Site }
	raw, err := c.get("/guard/sites", &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "PREFIX", "ROOMS", "MOST ROOMS", "LAST REGISTRATION", "DEMOTED UNTIL")
		for _, s := range l.Items {
			row(w, s.Prefix.String(), s.Rooms, s.MostRooms, s.LastSeen, s.DemotedUntil)
		}
	})
}

func (c *ctl) bansShow(args []string) error {
	pos, err := c.parse(c.flags("bans show"), args, 1, 1, "bans show PREFIX")
	if err != nil {
		return err
	}
	var b state.Ban
	raw, err := c.get("/guard/bans/"+pos[0], &b)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "prefix:", b.Prefix.String())
		row(w, "rule:", b.Rule)
		row(w, "reason:", b.Reason)
		row(w, "strikes:", b.Strikes)
		row(w, "created:", b.Created)
		row(w, "until:", b.Until)
		row(w, "node:", b.Node)
	})
}

func (c *ctl) bansAdd(args []string) error {
	fs := c.flags("bans add")
	var in admin.BanInput
	fs.StringVar(&in.Duration, "duration", "", "ban length, e.g. 30m, 12h (default 1h)")
	fs.StringVar(&in.Reason, "reason", "", "why, for the other operators")
	fs.BoolVar(&in.Force, "force", false, "ban even a prefix that holds a registered room's flow")
	pos, err := c.parse(fs, args, 1, 1, "bans add PREFIX [--duration D] [--reason TEXT] [--force]")
	if err != nil {
		return err
	}
	in.Prefix = pos[0]
	var b state.Ban
	raw, err := c.send("POST", "/guard/bans", in, &b)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.show(raw, nil)
	}
	return c.done("banned %s until %s", b.Prefix, b.Until.Local().Format("2006-01-02 15:04:05"))
}

func (c *ctl) bansLift(args []string) error {
	pos, err := c.parse(c.flags("bans lift"), args, 1, 1, "bans lift|remove PREFIX")
	if err != nil {
		return err
	}
	if _, err := c.send("DELETE", "/guard/bans/"+pos[0], nil, nil); err != nil {
		return err
	}
	return c.done("ban of %s lifted", pos[0])
}

func (c *ctl) printLists(raw []byte) error {
	var l state.Lists
	if err := json.Unmarshal(raw, &l); err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "LIST", "ENTRY")
		for _, s := range []struct {
			name string
			v    []string
		}{{"allow", l.Allow}, {"deny", l.Deny}, {"scanner-ua", l.ScannerUserAgents}} {
			for _, e := range s.v {
				row(w, s.name, e)
			}
		}
	})
}

func (c *ctl) listsShow(args []string) error {
	if _, err := c.parse(c.flags("lists show"), args, 0, 0, "lists show"); err != nil {
		return err
	}
	raw, err := c.get("/guard/lists", nil)
	if err != nil {
		return err
	}
	return c.printLists(raw)
}

func (c *ctl) listsSet(args []string) error {
	fs := c.flags("lists set")
	allow := fs.String("allow", "", "comma-separated allow list (replaces it)")
	deny := fs.String("deny", "", "comma-separated deny list (replaces it)")
	ua := fs.String("scanner-ua", "", "comma-separated scanner User-Agent substrings (replaces them)")
	if _, err := c.parse(fs, args, 0, 0, "lists set [--allow a,b] [--deny a,b] [--scanner-ua a,b]"); err != nil {
		return err
	}
	set := setFlags(fs)
	if !set["allow"] && !set["deny"] && !set["scanner-ua"] {
		return usagef("lists set needs --allow, --deny or --scanner-ua")
	}
	var l state.Lists
	if _, err := c.get("/guard/lists", &l); err != nil {
		return err
	}
	if set["allow"] {
		l.Allow = splitList(*allow)
	}
	if set["deny"] {
		l.Deny = splitList(*deny)
	}
	if set["scanner-ua"] {
		l.ScannerUserAgents = splitList(*ua)
	}
	raw, err := c.send("PUT", "/guard/lists", l, nil)
	if err != nil {
		return err
	}
	return c.printLists(raw)
}

func (c *ctl) listsEdit(add bool) func([]string) error {
	return func(args []string) error {
		verb := "remove"
		if add {
			verb = "add"
		}
		usage := "lists " + verb + " allow|deny|scanner-ua ENTRY..."
		pos, err := c.parse(c.flags("lists "+verb), args, 2, -1, usage)
		if err != nil {
			return err
		}
		var l state.Lists
		if _, err := c.get("/guard/lists", &l); err != nil {
			return err
		}
		var target *[]string
		switch pos[0] {
		case "allow":
			target = &l.Allow
		case "deny":
			target = &l.Deny
		case "scanner-ua":
			target = &l.ScannerUserAgents
		default:
			return usagef("usage: portcullis ctl %s", usage)
		}
		for _, e := range pos[1:] {
			i := slices.Index(*target, e)
			switch {
			case add && i < 0:
				*target = append(*target, e)
			case !add && i < 0:
				return fmt.Errorf("%q is not on the %s list", e, pos[0])
			case !add:
				*target = slices.Delete(*target, i, i+1)
			}
		}
		raw, err := c.send("PUT", "/guard/lists", l, nil)
		if err != nil {
			return err
		}
		return c.printLists(raw)
	}
}

// ctlEvent is a refusal as the API sends it.
type ctlEvent struct {
	Time      time.Time `json:"time"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	Method    string    `json:"method"`
	From      string    `json:"from"`
	UserAgent string    `json:"user_agent"`
	Room      string    `json:"room"`
	Rule      string    `json:"rule"`
	Action    string    `json:"action"`
	Code      int       `json:"code"`
	Reason    string    `json:"reason"`
}

func (c *ctl) events(args []string) error {
	fs := c.flags("events")
	rule := fs.String("rule", "", "only this rule")
	room := fs.String("room", "", "only this room")
	source := fs.String("source", "", "only sources in this IP or CIDR")
	since := fs.String("since", "", "at or after (RFC 3339 or a duration ago)")
	limit := fs.Int("limit", 0, "at most this many (default 100)")
	follow := fs.Bool("follow", false, "stream refusals as they happen (until interrupted)")
	count := fs.Int("count", 0, "with --follow: stop after this many")
	if _, err := c.parse(fs, args, 0, 0, "events [--rule R] [--room NAME] [--source CIDR] [--since T] [--limit N] [--follow [--count N]]"); err != nil {
		return err
	}
	if *follow {
		return c.follow(query("rule", *rule, "room", *room, "source", *source), *count)
	}
	lim := ""
	if *limit != 0 {
		lim = strconv.Itoa(*limit)
	}
	var l struct{ Items []ctlEvent }
	raw, err := c.get("/events"+query("rule", *rule, "room", *room, "source", *source, "since", *since, "limit", lim), &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "TIME", "SOURCE", "RULE", "ACTION", "ROOM", "REASON")
		for _, e := range l.Items {
			row(w, e.Time, e.Source, e.Rule, e.Action, e.Room, e.Reason)
		}
	})
}

// follow prints the event stream, one line (or one JSON object) per refusal.
func (c *ctl) follow(q string, count int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := c.connect(); err != nil {
		return err
	}
	body, err := c.client.Stream(ctx, "/events/stream"+q)
	if err != nil {
		return c.reach(err)
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if c.output == "json" {
			fmt.Fprintln(c.stdout, data)
		} else {
			var e ctlEvent
			if json.Unmarshal([]byte(data), &e) != nil {
				continue
			}
			fmt.Fprintf(c.stdout, "%s  %-22s  %-20s  %-6s  %s\n", e.Time.Local().Format(time.TimeOnly), e.Source, e.Rule, e.Action, e.Reason)
		}
		if n++; count > 0 && n >= count {
			return nil
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// ---- cluster, tokens, audit, health ---------------------------------------------------------

func (c *ctl) clusterMembers(args []string) error {
	if _, err := c.parse(c.flags("cluster members"), args, 0, 0, "cluster members"); err != nil {
		return err
	}
	var l struct{ Items []cluster.Member }
	raw, err := c.get("/cluster/members", &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) {
		row(w, "ID", "ADDRESS", "STATE", "SUFFRAGE", "HEALTHY", "LAST-CONTACT")
		for _, m := range l.Items {
			row(w, m.ID, m.Address, string(m.State), m.Suffrage, m.Healthy, m.LastContact)
		}
	})
}

func (c *ctl) clusterLeader(args []string) error {
	if _, err := c.parse(c.flags("cluster leader"), args, 0, 0, "cluster leader"); err != nil {
		return err
	}
	var l admin.LeaderView
	raw, err := c.get("/cluster/leader", &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) { row(w, "leader:", l.ID, l.Address) })
}

func (c *ctl) clusterJoin(args []string) error {
	pos, err := c.parse(c.flags("cluster join"), args, 2, 2, "cluster join ID HOST:PORT")
	if err != nil {
		return err
	}
	if _, err := c.send("POST", "/cluster/members", admin.JoinInput{ID: pos[0], Address: pos[1]}, nil); err != nil {
		return err
	}
	return c.done("node %s at %s joined", pos[0], pos[1])
}

func (c *ctl) clusterRemove(args []string) error {
	pos, err := c.parse(c.flags("cluster remove"), args, 1, 1, "cluster remove ID")
	if err != nil {
		return err
	}
	if _, err := c.send("DELETE", "/cluster/members/"+esc(pos[0]), nil, nil); err != nil {
		return err
	}
	return c.done("node %s removed", pos[0])
}

func printTokens(w *tabwriter.Writer, ts []admin.TokenView) {
	row(w, "ID", "NAME", "SCOPE", "CREATED")
	for _, t := range ts {
		row(w, t.ID, t.Name, string(t.Scope), t.Created)
	}
}

func (c *ctl) tokensList(args []string) error {
	if _, err := c.parse(c.flags("tokens list"), args, 0, 0, "tokens list"); err != nil {
		return err
	}
	var l struct{ Items []admin.TokenView }
	raw, err := c.get("/tokens", &l)
	if err != nil {
		return err
	}
	return c.show(raw, func(w *tabwriter.Writer) { printTokens(w, l.Items) })
}

func (c *ctl) tokensCreate(args []string) error {
	fs := c.flags("tokens create")
	scope := fs.String("scope", "", "read or admin")
	name := fs.String("name", "", "who or what uses the token")
	if _, err := c.parse(fs, args, 0, 0, "tokens create --scope read|admin --name NAME"); err != nil {
		return err
	}
	var tc admin.TokenCreated
	raw, err := c.send("POST", "/tokens", admin.TokenInput{Scope: state.Scope(*scope), Name: *name}, &tc)
	if err != nil {
		return err
	}
	return printSecret(c.stdout, c.stderr, c.output, raw, tc)
}

func (c *ctl) tokensRevoke(args []string) error {
	pos, err := c.parse(c.flags("tokens revoke"), args, 1, 1, "tokens revoke ID")
	if err != nil {
		return err
	}
	if _, err := c.send("DELETE", "/tokens/"+esc(pos[0]), nil, nil); err != nil {
		return err
	}
	return c.done("token %s revoked", pos[0])
}

func (c *ctl) audit(args []string) error {
	fs := c.flags("audit")
	limit := fs.Int("limit", 0, "page size (1-1000, default 100)")
	cur := fs.String("cursor", "", "continue after this cursor")
	if _, err := c.parse(fs, args, 0, 0, "audit [--limit N] [--cursor C]"); err != nil {
		return err
	}
	lim := ""
	if *limit != 0 {
		lim = strconv.Itoa(*limit)
	}
	var l struct {
		Items      []state.AuditEntry `json:"items"`
		NextCursor string             `json:"next_cursor"`
	}
	raw, err := c.get("/audit"+query("limit", lim, "cursor", *cur), &l)
	if err != nil {
		return err
	}
	err = c.show(raw, func(w *tabwriter.Writer) {
		row(w, "SEQ", "TIME", "WHO", "ACTION", "TARGET", "NODE")
		for _, a := range l.Items {
			row(w, a.Seq, a.Time, a.Who, a.Action, a.Target, a.Node)
		}
	})
	if err == nil && c.output == "table" && l.NextCursor != "" {
		fmt.Fprintf(c.stderr, "more entries: --cursor %s\n", l.NextCursor)
	}
	return err
}

func (c *ctl) health(args []string) error {
	if _, err := c.parse(c.flags("health"), args, 0, 0, "health"); err != nil {
		return err
	}
	var h admin.Health
	raw, err := c.get("/health", &h)
	var ae *admin.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
		// The body of an unhealthy answer is the health report, not an error.
		raw, err = c.getAny("/health", &h)
	}
	if err != nil {
		return err
	}
	if err := c.show(raw, func(w *tabwriter.Writer) {
		row(w, "status:", h.Status)
		row(w, "node:", h.Node)
		row(w, "leader:", h.Leader)
		keys := make([]string, 0, len(h.Checks))
		for k := range h.Checks {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			row(w, k+":", h.Checks[k])
		}
	}); err != nil {
		return err
	}
	if h.Status != "ok" {
		return errors.New("node unavailable")
	}
	return nil
}

// getAny is get that accepts any status with a JSON body.
func (c *ctl) getAny(path string, v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return c.client.GetAny(ctx, path, v)
}

// ---- portcullis token: the bootstrap through the node's unix socket -------------------------

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

// runToken runs `portcullis token ARGS` and returns the exit status.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scope := fs.String("scope", "", "create: read or admin")
	name := fs.String("name", "", "create: who or what uses the token")
	dataDir := fs.String("data-dir", "", "the node's data dir (default: node.data_dir of --config, else ./data)")
	cfgPath := fs.String("config", "", "the node's config file, to find its data dir")
	sock := fs.String("socket", "", "the token socket (default: DATA_DIR/"+admin.SocketName+")")
	output := fs.String("o", "table", "output: table or json")
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
	if *output != "table" && *output != "json" {
		fmt.Fprintln(stderr, "portcullis token: -o must be table or json")
		return 2
	}
	path := *sock
	if path == "" {
		dir := *dataDir
		if dir == "" {
			cfg, err := config.Load(*cfgPath, os.Environ())
			if err != nil {
				fmt.Fprintf(stderr, "portcullis token: config: %v\n", err)
				return 1
			}
			dir = cfg.Node.DataDir
		}
		path = filepath.Join(dir, admin.SocketName)
	}
	cl, err := client.New(client.Config{API: "http://portcullis", Prefix: "/v1",
		Dial: func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "unix", path) }})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis token: %v\n", err)
		return 1
	}
	call := func(method, p string, body any) ([]byte, error) {
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
	}
	c.output = *output
	switch {
	case verb == "create" && len(pos) == 0:
		if *scope == "" || *name == "" {
			fmt.Fprintln(stderr, "portcullis token: create needs --scope read|admin and --name NAME")
			return 2
		}
		raw, err := call("POST", "/tokens", admin.TokenInput{Scope: state.Scope(*scope), Name: *name})
		if err == nil {
			var tc admin.TokenCreated
			if err = json.Unmarshal(raw, &tc); err == nil {
				err = printSecret(stdout, stderr, *output, raw, tc)
			}
		}
		return exitFor(stderr, err)
	case verb == "list" && len(pos) == 0:
		raw, err := call("GET", "/tokens", nil)
		if err == nil {
			var l struct{ Items []admin.TokenView }
			if err = json.Unmarshal(raw, &l); err == nil {
				err = c.show(raw, func(w *tabwriter.Writer) { printTokens(w, l.Items) })
			}
		}
		return exitFor(stderr, err)
	case verb == "revoke" && len(pos) == 1:
		_, err := call("DELETE", "/tokens/"+esc(pos[0]), nil)
		if err == nil {
			err = c.done("token %s revoked", pos[0])
		}
		return exitFor(stderr, err)
	}
	fs.Usage()
	return 2
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

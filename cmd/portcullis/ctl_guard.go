package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

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

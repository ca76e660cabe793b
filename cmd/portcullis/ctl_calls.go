package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/relay"
)

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

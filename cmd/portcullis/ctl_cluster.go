package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
)

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

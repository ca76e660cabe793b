package main

import (
	"bufio"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/admin"
)

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

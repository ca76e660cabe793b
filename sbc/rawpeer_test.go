package sbc

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// rawPeer is a SIP peer on a plain UDP socket: it sends messages as written and records every
// datagram it gets as bytes, so a test sees exactly what crossed the wire (a sipgo UA would parse
// and rewrite it first).
type rawPeer struct {
	t    *testing.T
	conn *net.UDPConn
	addr string // ip:port
	got  chan string
}

func newRawPeer(t *testing.T, ip string) *rawPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{t: t, conn: c, addr: c.LocalAddr().String(), got: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(p.got)
				return
			}
			select {
			case p.got <- string(buf[:n]):
			default:
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return p
}

func (p *rawPeer) send(to, msg string) {
	p.t.Helper()
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDP([]byte(msg), ua); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next message for which match holds, or "" when none came within d.
func (p *rawPeer) next(d time.Duration, match func(string) bool) string {
	p.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-p.got:
			if !ok {
				return ""
			}
			if match(m) {
				return m
			}
		case <-deadline:
			return ""
		}
	}
}

func startsWith(prefix string) func(string) bool {
	return func(m string) bool { return strings.HasPrefix(m, prefix) }
}

// register registers the peer as room (digest answered) and waits for the 200.
func (p *rawPeer) register(n *Node, room, password string) {
	p.t.Helper()
	node, domain := n.addr(p.t, "udp"), n.cfg.SIP.Domain
	callID := randHex()
	reg := func(cseq int, auth string) string {
		return "REGISTER sip:" + domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + p.addr + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + room + "@" + domain + ">;tag=r" + callID[:6] + "\r\n" +
			"To: <sip:" + room + "@" + domain + ">\r\nCall-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: <sip:" + room + "@" + p.addr + ">\r\nExpires: 300\r\n" + auth + "Content-Length: 0\r\n\r\n"
	}
	p.send(node, reg(1, ""))
	res := p.next(5*time.Second, startsWith("SIP/2.0 401"))
	if res == "" {
		p.t.Fatalf("register %s: no 401", room)
	}
	m, err := sip.ParseMessage([]byte(res))
	if err != nil {
		p.t.Fatal(err)
	}
	chal, err := digest.ParseChallenge(m.(*sip.Response).GetHeader("WWW-Authenticate").Value())
	if err != nil {
		p.t.Fatal(err)
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + domain, Username: room, Password: password, Count: 1})
	if err != nil {
		p.t.Fatal(err)
	}
	p.send(node, reg(2, "Authorization: "+cred.String()+"\r\n"))
	if p.next(5*time.Second, startsWith("SIP/2.0 200")) == "" {
		p.t.Fatalf("register %s: no 200", room)
	}
}

// reply answers a request the peer got with code (a To tag added).
func (p *rawPeer) reply(req string, code int, reason string) {
	p.t.Helper()
	m, err := sip.ParseMessage([]byte(req))
	if err != nil {
		p.t.Fatalf("%v\n%s", err, req)
	}
	r := m.(*sip.Request)
	res := sip.NewResponseFromRequest(r, code, reason, nil)
	res.To().Params.Add("tag", "raw"+randHex()[:6])
	dest := r.Via().Host + ":" + strconv.Itoa(r.Via().Port)
	p.send(dest, res.String())
}

// lenientHeaderNames splits a message's header block on any line end, as a peer that accepts
// bare LF or CR does, and returns the header names it reads (lower case; continuation lines
// belong to the header before them).
func lenientHeaderNames(msg string) []string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	var out []string
	for i, l := range strings.FieldsFunc(head, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if i == 0 || l[0] == ' ' || l[0] == '\t' {
			continue
		}
		name, _, _ := strings.Cut(l, ":")
		out = append(out, strings.ToLower(strings.TrimSpace(name)))
	}
	return out
}

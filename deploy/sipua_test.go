package deploy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// A minimal SIP user agent over UDP, written from the RFC rather than with the library the node
// uses, so that the container tests talk to the image the way a room system would: REGISTER with
// digest authentication (RFC 3261 22, RFC 8760), OPTIONS, INVITE/ACK/BYE. One socket both sends
// requests and answers what the node sends to it (keepalive OPTIONS, INVITE when it acts as the
// room), so a registration's flow stays alive for the whole test.

// sipMsg is a parsed SIP message.
type sipMsg struct {
	method, uri string // request
	status      int    // response
	reason      string
	hdrs        [][2]string // canonical name, value; in order
	body        []byte
	from        *net.UDPAddr
}

func (m *sipMsg) isRequest() bool { return m.method != "" }

func (m *sipMsg) get(name string) string {
	for _, h := range m.hdrs {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

func (m *sipMsg) all(name string) []string {
	var vs []string
	for _, h := range m.hdrs {
		if strings.EqualFold(h[0], name) {
			vs = append(vs, h[1])
		}
	}
	return vs
}

func (m *sipMsg) String() string {
	if m.isRequest() {
		return m.method + " " + m.uri
	}
	return strconv.Itoa(m.status) + " " + m.reason
}

// compact header forms (RFC 3261 7.3.3).
var compact = map[string]string{"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact",
	"l": "Content-Length", "c": "Content-Type", "k": "Supported", "s": "Subject", "e": "Content-Encoding"}

func parseSIP(b []byte) (*sipMsg, error) {
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return nil, errors.New("no end of headers")
	}
	lines := strings.Split(string(head), "\r\n")
	m := &sipMsg{}
	first := strings.SplitN(lines[0], " ", 3)
	if len(first) < 3 {
		return nil, fmt.Errorf("bad start line %q", lines[0])
	}
	if first[0] == "SIP/2.0" {
		code, err := strconv.Atoi(first[1])
		if err != nil {
			return nil, fmt.Errorf("bad status %q", lines[0])
		}
		m.status, m.reason = code, first[2]
	} else {
		m.method, m.uri = first[0], first[1]
	}
	for _, l := range lines[1:] {
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(m.hdrs) > 0 { // folded line
			m.hdrs[len(m.hdrs)-1][1] += " " + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("bad header %q", l)
		}
		k = strings.TrimSpace(k)
		if full, ok := compact[strings.ToLower(k)]; ok {
			k = full
		}
		m.hdrs = append(m.hdrs, [2]string{k, strings.TrimSpace(v)})
	}
	if cl := m.get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n > len(body) {
			return nil, fmt.Errorf("bad Content-Length %q (%d bytes of body)", cl, len(body))
		}
		body = body[:n]
	}
	m.body = body
	return m, nil
}

// sipUA is one UDP socket acting as a SIP user agent.
type sipUA struct {
	t    testing.TB
	name string
	conn *net.UDPConn
	// host is the address written in Via and Contact: ours as the containers see it.
	host string
	port int

	mu      sync.Mutex
	waiting map[string]chan *sipMsg // client transactions by Via branch
	// answer decides the response to an INVITE (the room side); nil answers 486.
	answer     func(req *sipMsg) (int, string)
	invites    int    // INVITEs received
	lastInvite []byte // the body of the last one
	closed     bool
}

// newSipUA binds a UDP socket on all addresses; host is the address the node sees us at.
func newSipUA(t testing.TB, name, host string) *sipUA {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	ua := &sipUA{t: t, name: name, conn: c, host: host, port: c.LocalAddr().(*net.UDPAddr).Port,
		waiting: map[string]chan *sipMsg{}}
	done := make(chan struct{})
	go ua.read(done)
	t.Cleanup(func() {
		ua.mu.Lock()
		ua.closed = true
		ua.mu.Unlock()
		c.Close()
		<-done
	})
	return ua
}

func (ua *sipUA) read(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 65535)
	for {
		n, from, err := ua.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n <= 4 { // CRLF keepalives
			continue
		}
		m, err := parseSIP(append([]byte(nil), buf[:n]...))
		if err != nil {
			ua.logf("unparsable datagram from %s: %v", from, err)
			continue
		}
		m.from = from
		if m.isRequest() {
			ua.serve(m)
			continue
		}
		branch := param(m.get("Via"), "branch")
		ua.mu.Lock()
		ch := ua.waiting[branch]
		ua.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
	}
}

func (ua *sipUA) logf(format string, args ...any) {
	ua.mu.Lock()
	closed := ua.closed
	ua.mu.Unlock()
	if !closed {
		ua.t.Logf("%s: "+format, append([]any{ua.name}, args...)...)
	}
}

// serve answers a request from the node: OPTIONS (keepalive), BYE, CANCEL with 200, INVITE as
// answer says, ACK with nothing.
func (ua *sipUA) serve(req *sipMsg) {
	switch req.method {
	case "ACK":
		return
	case "INVITE":
		ua.mu.Lock()
		ua.invites++
		ua.lastInvite = req.body
		answer := ua.answer
		ua.mu.Unlock()
		code, reason := 486, "Busy Here"
		if answer != nil {
			code, reason = answer(req)
		}
		var body []byte
		extra := [][2]string{}
		if code/100 == 2 {
			body = sdp(ua.host, 40000)
			extra = append(extra, [2]string{"Contact", fmt.Sprintf("<sip:room@%s:%d>", ua.host, ua.port)},
				[2]string{"Content-Type", "application/sdp"})
		}
		ua.respond(req, code, reason, extra, body)
	default:
		ua.respond(req, 200, "OK", nil, nil)
	}
}

// respond sends a response to req back to where it came from.
func (ua *sipUA) respond(req *sipMsg, code int, reason string, extra [][2]string, body []byte) {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, h := range req.hdrs {
		switch strings.ToLower(h[0]) {
		case "via", "from", "call-id", "cseq", "record-route":
			fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
		case "to":
			v := h[1]
			if param(v, "tag") == "" && code > 100 {
				v += ";tag=" + token(8)
			}
			fmt.Fprintf(&b, "To: %s\r\n", v)
		}
	}
	for _, h := range extra {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	if _, err := ua.conn.WriteToUDP([]byte(b.String()), req.from); err != nil {
		ua.logf("respond %d to %s: %v", code, req, err)
	}
}

// sipReq is a request to send; Via, Max-Forwards, User-Agent and Content-Length are added.
type sipReq struct {
	method, uri string
	hdrs        [][2]string
	body        []byte
}

// do sends req to dst as a client transaction (RFC 3261 17.1: retransmitted over UDP every T1,
// doubling to T2) and returns the final response, or an error after timeout.
func (ua *sipUA) do(dst *net.UDPAddr, req sipReq, timeout time.Duration) (*sipMsg, error) {
	branch := "z9hG4bK" + token(12)
	ch := make(chan *sipMsg, 8)
	ua.mu.Lock()
	ua.waiting[branch] = ch
	ua.mu.Unlock()
	defer func() {
		ua.mu.Lock()
		delete(ua.waiting, branch)
		ua.mu.Unlock()
	}()
	pkt := ua.format(req, branch)

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	rto := 500 * time.Millisecond
	for {
		if _, err := ua.conn.WriteToUDP(pkt, dst); err != nil {
			return nil, err
		}
		retransmit := time.NewTimer(rto)
	wait:
		for {
			select {
			case m := <-ch:
				if m.status >= 200 {
					retransmit.Stop()
					return m, nil
				}
				if req.method == "INVITE" { // provisional: stop retransmitting, wait for final
					retransmit.Stop()
					retransmit = time.NewTimer(timeout)
				}
			case <-retransmit.C:
				break wait
			case <-deadline.C:
				retransmit.Stop()
				return nil, fmt.Errorf("%s %s to %s: no final response within %s", req.method, req.uri, dst, timeout)
			}
		}
		rto = min(2*rto, 4*time.Second)
	}
}

// send sends req to dst once, without waiting for anything (an ACK to a 2xx).
func (ua *sipUA) send(dst *net.UDPAddr, req sipReq) error {
	_, err := ua.conn.WriteToUDP(ua.format(req, "z9hG4bK"+token(12)), dst)
	return err
}

// format renders req with a Via carrying branch.
func (ua *sipUA) format(req sipReq, branch string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", req.method, req.uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s:%d;branch=%s;rport\r\n", ua.host, ua.port, branch)
	b.WriteString("Max-Forwards: 70\r\n")
	for _, h := range req.hdrs {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("User-Agent: portcullis-deploy-test\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(req.body))
	b.Write(req.body)
	return []byte(b.String())
}

// options sends an OPTIONS to dst and returns the final response.
func (ua *sipUA) options(dst *net.UDPAddr, timeout time.Duration) (*sipMsg, error) {
	return ua.do(dst, sipReq{method: "OPTIONS", uri: "sip:" + dst.String(), hdrs: [][2]string{
		{"From", fmt.Sprintf("<sip:probe@%s>;tag=%s", ua.host, token(8))},
		{"To", "<sip:" + dst.String() + ">"},
		{"Call-ID", token(16)},
		{"CSeq", "1 OPTIONS"},
		{"Accept", "application/sdp"},
	}}, timeout)
}

// registration is one room registering through a node.
type registration struct {
	room, domain, password string
	// contact is the Contact URI to bind; "" sends none (a query for the current bindings).
	contact string
	expires int
}

// register sends REGISTER to dst, answers the digest challenge and returns the final response.
func (ua *sipUA) register(dst *net.UDPAddr, r registration, timeout time.Duration) (*sipMsg, error) {
	aor := "sip:" + r.room + "@" + r.domain
	callID := token(16)
	fromTag := token(8)
	mk := func(cseq int, auth string) sipReq {
		h := [][2]string{
			{"From", "<" + aor + ">;tag=" + fromTag},
			{"To", "<" + aor + ">"},
			{"Call-ID", callID},
			{"CSeq", strconv.Itoa(cseq) + " REGISTER"},
		}
		if r.contact != "" {
			h = append(h, [2]string{"Contact", "<" + r.contact + ">"}, [2]string{"Expires", strconv.Itoa(r.expires)})
		}
		if auth != "" {
			h = append(h, [2]string{"Authorization", auth})
		}
		return sipReq{method: "REGISTER", uri: "sip:" + r.domain, hdrs: h}
	}
	res, err := ua.do(dst, mk(1, ""), timeout)
	if err != nil {
		return nil, err
	}
	if res.status != 401 {
		return res, nil
	}
	auth, err := answerChallenge(res.all("WWW-Authenticate"), r.room, r.password, "REGISTER", "sip:"+r.domain)
	if err != nil {
		return nil, err
	}
	return ua.do(dst, mk(2, auth), timeout)
}

// answerChallenge answers the first challenge whose algorithm testutil.DigestAnswer knows (the
// node offers SHA-256 and MD5, RFC 8760), with qop=auth when offered, as the other tests' user
// agents do.
func answerChallenge(challenges []string, user, password, method, uri string) (string, error) {
	for _, c := range challenges {
		if a, err := testutil.DigestAnswer(c, method, uri, user, password); err == nil {
			return a, nil
		}
	}
	return "", fmt.Errorf("no digest challenge with a known algorithm in %q", challenges)
}

// contacts returns the Contact URIs of a REGISTER response (the current bindings).
func contacts(m *sipMsg) []string {
	var out []string
	for _, v := range m.all("Contact") {
		for _, c := range strings.Split(v, ",") {
			c = strings.TrimSpace(c)
			if i, j := strings.Index(c, "<"), strings.Index(c, ">"); i >= 0 && j > i {
				c = c[i+1 : j]
			}
			if c != "" {
				out = append(out, c)
			}
		}
	}
	return out
}

// param returns a ;name=value parameter of a header value.
func param(v, name string) string {
	for _, p := range strings.Split(v, ";")[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return val
		}
	}
	return ""
}

func token(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// sdp is a minimal audio offer/answer (PCMU) at host:port.
func sdp(host string, port int) []byte {
	id := strconv.FormatInt(time.Now().Unix(), 10)
	return []byte("v=0\r\no=- " + id + " " + id + " IN IP4 " + host + "\r\ns=-\r\nc=IN IP4 " + host + "\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
}

package sbc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testpeer"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// TestEndpointCorpus (issue #13 item 6) replays the endpoint corpus through a node with SIPp,
// both ways for each pair: the service calls the room (registered with the room's
// User-Agent) and the room calls the service (through the node, answering its 407). Each call
// is INVITE/200/ACK, a content-share re-INVITE adding slides video and BFCP, one removing
// them, hold and resume, BYE. Every SDP the far side receives keeps each m-line's kind,
// proto, formats and attributes (bar those the relay must change), with the relay's ports;
// RTP flows both ways through the relay on audio and main video.
func TestEndpointCorpus(t *testing.T) {
	testpeer.Require(t, "sipp")
	pairs := loadCorpus(t)
	farPort := testpeer.FreeUDPPort(t)
	cfg := callConfig(t)
	cfg.Calls.RingTimeout = config.Duration(20 * time.Second)
	cfg.Calls.DNS = dnsServer(t, []*dns.SRV{{Priority: 10, Weight: 10, Port: uint16(farPort), Target: "far1.far.test."}})
	for i := range pairs {
		pairs[i].roomName, pairs[i].roomPass = fmt.Sprintf("corpus%d", i+1), fmt.Sprintf("corpus-pass-%d-x7", i+1)
		cfg.Rooms = append(cfg.Rooms, config.Room{Name: pairs[i].roomName, Password: pairs[i].roomPass, Inbound: "open"})
	}
	n := startNode(t, cfg)
	calls := 0
	for _, p := range pairs {
		for _, roomCalls := range []bool{false, true} {
			dir := "service calls room"
			if roomCalls {
				dir = "room calls service"
			}
			calls++
			ok := t.Run(p.name+"/"+dir, func(t *testing.T) {
				runCorpusCall(t, n, p, roomCalls, farPort, calls)
			})
			if !ok {
				return // the node may still hold the failed call; later rows would misread it
			}
		}
	}
}

// corpusEndpoint is the media side of one SIPp peer: a UDP socket per m-line index, each
// counting the packets that arrive from the relay port expected for it.
type corpusEndpoint struct {
	socks []*net.UDPConn
	from  []atomic.Pointer[netip.AddrPort] // expected source (the relay), per socket
	got   []atomic.Int64
}

func newCorpusEndpoint(t *testing.T, n int) *corpusEndpoint {
	e := &corpusEndpoint{from: make([]atomic.Pointer[netip.AddrPort], n), got: make([]atomic.Int64, n)}
	for i := range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		e.socks = append(e.socks, c)
		go func() {
			buf := make([]byte, 2048)
			for {
				k, src, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if want := e.from[i].Load(); want != nil && src == *want && k >= 12 {
					e.got[i].Add(1)
				}
			}
		}()
	}
	return e
}

func (e *corpusEndpoint) ports() []int {
	out := make([]int, len(e.socks))
	for i, c := range e.socks {
		out[i] = c.LocalAddr().(*net.UDPAddr).Port
	}
	return out
}

// firstPT is the first payload format of an m-line block: what the endpoint sends.
func firstPT(block []string) uint8 {
	f := strings.Fields(block[0])
	if len(f) < 4 {
		return 0
	}
	v, _ := strconv.Atoi(f[3])
	return uint8(v)
}

// corpusMessages is what one side of a call sends: five SDP bodies (initial, content added,
// content removed, hold, resume).
type corpusMessages [5]string

func runCorpusCall(t *testing.T, n *Node, p corpusPair, roomCalls bool, farPort, seq int) {
	caller, callee := p.service, p.room
	callerUA, calleeUA := p.serviceUA, p.roomUA
	if roomCalls {
		caller, callee, callerUA, calleeUA = p.room, p.service, p.roomUA, p.serviceUA
	}
	before := len(n.Store().State().Records(state.RecordQuery{Limit: 1000}))
	offerAll := caller.all()
	nm := len(offerAll)
	a, b := newCorpusEndpoint(t, nm), newCorpusEndpoint(t, nm)
	holdAnswer := map[string]string{"sendonly": "recvonly", "inactive": "inactive"}[p.hold]
	nMain := len(caller.main)
	offers := [][][]string{
		caller.main, offerAll, removed(offerAll, nMain),
		withDirection(removed(offerAll, nMain), p.hold), removed(offerAll, nMain),
	}
	var sent, answered corpusMessages
	for k, o := range offers {
		sent[k] = renderSDP(caller.session, o, a.ports(), k+1)
		ans := answerBlocks(o, callee.all())
		if k == 3 {
			ans = withDirection(ans, holdAnswer)
		}
		answered[k] = renderSDP(callee.session, ans, b.ports(), k+1)
	}

	dir := t.TempDir()
	cid := fmt.Sprintf("corpus-%d-%s", seq, randHex())
	callID := cid + "-1@127.0.0.1" // SIPp's -cid_str below, for its call 1
	uacPort := testpeer.FreeUDPPort(t)
	var uas *sipp
	if roomCalls {
		uas = startSIPp(t, "-sf", writeScenario(t, dir, "uas", uasScenario(calleeUA, answered)),
			"-i", "127.0.0.1", "-p", strconv.Itoa(farPort), "-m", "1", "-timeout", "40s", "-timeout_error")
	} else {
		callee := strconv.Itoa(testpeer.FreeUDPPort(t))
		reg := startSIPp(t, n.addr(t, "udp"), "-sf", writeScenario(t, dir, "register", registerScenario(p.roomUA)),
			"-s", p.roomName, "-au", p.roomName, "-ap", p.roomPass,
			"-i", "127.0.0.1", "-p", callee, "-m", "1", "-timeout", "10s", "-timeout_error")
		reg.wait(t)
		uas = startSIPp(t, "-sf", writeScenario(t, dir, "uas", uasScenario(calleeUA, answered)),
			"-i", "127.0.0.1", "-p", callee, "-m", "1", "-aa", "-timeout", "40s", "-timeout_error")
	}
	time.Sleep(200 * time.Millisecond) // let SIPp bind (as sippRoom does)
	args := []string{n.addr(t, "udp"), "-sf", writeScenario(t, dir, "uac", uacScenario(p, roomCalls, callerUA, n.cfg.SIP.Domain, sent)),
		"-i", "127.0.0.1", "-p", strconv.Itoa(uacPort), "-m", "1", "-timeout", "40s", "-timeout_error", "-cid_str", cid + "-%u@%s"}
	if roomCalls {
		args = append(args, "-au", p.roomName, "-ap", p.roomPass, "-auth_uri", "meeting@far.test")
	}
	uac := startSIPp(t, args...)

	// Media, once the call is up: the caller's and the room's sockets send to the relay ports
	// of audio and main video until each side has had packets from the relay.
	// Then content: the slides video and BFCP (UDP datagrams, or a TCP connection from each
	// side to the relay, both answering a=setup:passive).
	answerAll := answerBlocks(offerAll, callee.all())
	checkCorpusMedia(t, n, a, b, []int{0, 1}, offerAll, answerAll, uac)
	releaseCaller(t, uacPort, callID, 1)
	content := []int{nMain}
	if strings.Contains(offerAll[nMain+1][0], "UDP") && mPort(answerAll[nMain+1][0]) != 0 {
		content = append(content, nMain+1)
	}
	checkCorpusMedia(t, n, a, b, content, offerAll, answerAll, uac)
	if strings.Contains(offerAll[nMain+1][0], "TCP/BFCP") && mPort(answerAll[nMain+1][0]) != 0 {
		checkCorpusTCP(t, n, nMain+1)
	}
	releaseCaller(t, uacPort, callID, 2)

	uac.wait(t)
	uas.wait(t)
	recs := records(t, n, before+1)
	r := recs[len(recs)-1] // oldest first: this call's is the last
	wantDir := state.Inbound
	if roomCalls {
		wantDir = state.Outbound
	}
	if r.Status != 200 || r.Room != p.roomName || r.Direction != wantDir || r.Duration <= 0 {
		t.Fatalf("record: %+v", r)
	}

	// What crossed the node.
	gotOffers := sippBodies(uas.messages(), "INVITE ")
	gotAnswers := sippBodies(uac.messages(), "SIP/2.0 200")
	if len(gotOffers) != len(sent) || len(gotAnswers) != len(answered) {
		t.Fatalf("the callee received %d offers and the caller %d answers; want %d each", len(gotOffers), len(gotAnswers), len(sent))
	}
	phases := []string{"INVITE", "content re-INVITE", "content removed", "hold (" + p.hold + ")", "resume"}
	for k := range sent {
		for _, e := range compareRelayed(sent[k], gotOffers[k], true) {
			t.Errorf("%s offer: %s", phases[k], e)
		}
		for _, e := range compareRelayed(answered[k], gotAnswers[k], false) {
			t.Errorf("%s answer: %s", phases[k], e)
		}
	}
	if os.Getenv("CORPUS_DUMP") != "" {
		t.Logf("received content offer:\n%s\nreceived hold answer:\n%s", gotOffers[1], gotAnswers[3])
	}
	if t.Failed() {
		t.Logf("sent offer (content):\n%s\nreceived:\n%s", sent[1], gotOffers[1])
	}
}

// checkCorpusMedia waits for the call's streams at the m-line indexes idx and sends packets
// both ways on them (RTP with the sender's first payload type, BFCP Hello on BFCP m-lines)
// until each endpoint has had packets from its relay port. It fails if the caller SIPp ends
// first.
func checkCorpusMedia(t *testing.T, n *Node, a, b *corpusEndpoint, idx []int, aBlocks, bBlocks [][]string, uac *sipp) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var streams []media.StreamStats
	want := func(i int) bool { return slices.Contains(idx, i) }
	ready := func() bool {
		streams = liveStreams(n)
		ok := 0
		for _, s := range streams {
			if want(s.Index) && s.PortA != 0 && s.PortB != 0 {
				ok++
			}
		}
		return ok == len(idx)
	}
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatalf("the call's streams %v did not come up: %+v", idx, streams)
		}
		select {
		case err := <-uac.done:
			t.Fatalf("the caller ended before media: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	relay := netip.MustParseAddr("127.0.0.1")
	type leg struct {
		from  *corpusEndpoint
		to    netip.AddrPort
		block []string
		index int
	}
	var legs []leg
	for _, s := range streams {
		if !want(s.Index) {
			continue
		}
		pa, pb := netip.AddrPortFrom(relay, uint16(s.PortA)), netip.AddrPortFrom(relay, uint16(s.PortB))
		a.from[s.Index].Store(&pa)
		b.from[s.Index].Store(&pb)
		legs = append(legs, leg{a, pa, aBlocks[s.Index], s.Index}, leg{b, pb, bBlocks[s.Index], s.Index})
	}
	done := func() bool {
		for _, i := range idx {
			if a.got[i].Load() < 5 || b.got[i].Load() < 5 {
				return false
			}
		}
		return true
	}
	report := func() string {
		var parts []string
		for _, i := range idx {
			parts = append(parts, fmt.Sprintf("m=%d (%s): caller got %d, callee got %d", i, aBlocks[i][0], a.got[i].Load(), b.got[i].Load()))
		}
		return strings.Join(parts, "; ")
	}
	rtpPkt, bfcpPkt := make([]byte, 172), make([]byte, 12)
	for seq := uint16(1); !done(); seq++ {
		if time.Now().After(deadline) {
			t.Fatalf("media through the relay: %s", report())
		}
		for _, l := range legs {
			pkt := rtpPkt
			if strings.Contains(l.block[0], "BFCP") {
				// BFCP Hello (RFC 8855 section 5.1: version 2 over UDP, primitive 11).
				pkt = bfcpPkt
				pkt[0], pkt[1], pkt[2], pkt[3] = 0x40, 11, 0, 0
				pkt[4], pkt[5], pkt[6], pkt[7] = 0, 0, 0, 1
				pkt[8], pkt[9], pkt[10], pkt[11] = byte(seq>>8), byte(seq), 0, 2
			} else {
				// An RTP header (SRTP and DTLS-SRTP keep it in the clear) and an opaque payload.
				pkt[0], pkt[1] = 0x80, firstPT(l.block)&0x7f
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				pkt[8], pkt[9], pkt[10], pkt[11] = 0x5e, 0xed, byte(l.index), byte(len(legs))
			}
			if _, err := l.from.socks[l.index].WriteToUDPAddrPort(pkt, l.to); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("relayed both ways: %s", report())
}

// checkCorpusTCP connects to both relay ports of the TCP m-line at index, as the caller and
// the callee (each told a=setup:passive), and sends a BFCP Hello each way through the relay.
func checkCorpusTCP(t *testing.T, n *Node, index int) {
	t.Helper()
	var st media.StreamStats
	waitUntil(t, 20*time.Second, "the TCP BFCP stream", func() bool {
		for _, s := range liveStreams(n) {
			if s.Index == index && s.PortA != 0 && s.PortB != 0 {
				st = s
				return true
			}
		}
		return false
	})
	dial := func(port int) net.Conn {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String(), 5*time.Second)
		if err != nil {
			t.Fatalf("connecting to the relay's BFCP port %d: %v", port, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := dial(st.PortA), dial(st.PortB)
	for _, dir := range []struct {
		from, to net.Conn
		user     uint16
	}{{ca, cb, 2}, {cb, ca, 5}} {
		if _, err := dir.from.Write(bfcpFrame(11, 1, dir.user, dir.user)); err != nil {
			t.Fatal(err)
		}
		prim, _, err := readBFCP(dir.to, 10*time.Second)
		if err != nil || prim != 11 {
			t.Fatalf("BFCP Hello through the TCP relay: primitive %d, %v", prim, err)
		}
	}
	t.Logf("relayed both ways: m=%d TCP/BFCP Hello", index)
}

// releaseCaller sends the caller SIPp the INFO its scenario waits for after the ACK (test
// control, straight to SIPp; it matches the call by Call-ID): the call goes on to the
// re-INVITEs.
func releaseCaller(t *testing.T, port int, callID string, cseq int) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := "INFO sip:caller@127.0.0.1:" + strconv.Itoa(port) + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-corpus-" + randHex() + "\r\n" +
		"From: <sip:control@127.0.0.1>;tag=control\r\nTo: <sip:caller@127.0.0.1>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " INFO\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.WriteToUDP([]byte(msg), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
}

var sippReceived = regexp.MustCompile(`(?m)^\S+ message received \[\d+\] bytes :\n\n`)

// sippBodies returns the SDP bodies of the messages SIPp logged as received whose first line
// starts with start and that carry a body, retransmissions folded.
func sippBodies(log, start string) []string {
	log = strings.ReplaceAll(log, "\r\n", "\n")
	var out []string
	locs := sippReceived.FindAllStringIndex(log, -1)
	for i, l := range locs {
		end := len(log)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		msg := log[l[1]:end]
		if k := strings.Index(msg, "\n-----------------------------------------------"); k >= 0 {
			msg = msg[:k]
		}
		if !strings.HasPrefix(msg, start) {
			continue
		}
		_, body, ok := strings.Cut(msg, "\n\n")
		body = strings.TrimSpace(body)
		if !ok || !strings.HasPrefix(body, "v=0") {
			continue
		}
		if len(out) > 0 && out[len(out)-1] == body {
			continue // a retransmission
		}
		out = append(out, body)
	}
	return out
}

func writeScenario(t *testing.T, dir, name, xml string) string {
	t.Helper()
	p := filepath.Join(dir, name+".sipp")
	if err := os.WriteFile(p, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func cdata(lines ...string) string {
	return "  <send retrans=\"500\">\n    <![CDATA[\n" + strings.Join(lines, "\n") + "\n\n    ]]>\n  </send>\n"
}

func sdpLines(body string) string { return strings.TrimRight(body, "\n") }

const scenarioHead = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<!DOCTYPE scenario SYSTEM \"sipp.dtd\">\n"

// registerScenario registers the room as [service] with the room's User-Agent and a
// Contact with an instance ID, as room systems do (RFC 5626).
func registerScenario(ua string) string {
	reg := func(cseq int, auth string) string {
		return cdata(
			"REGISTER sip:[remote_ip]:[remote_port] SIP/2.0",
			"Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport",
			"From: <sip:[service]@[remote_ip]>;tag=[pid]R[call_number]",
			"To: <sip:[service]@[remote_ip]>",
			"Call-ID: [call_id]",
			"CSeq: "+strconv.Itoa(cseq)+" REGISTER",
			"Contact: <sip:[service]@[local_ip]:[local_port];transport=udp>;+sip.instance=\"<urn:uuid:6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9>\";audio;video",
			auth+"Max-Forwards: 70",
			"Expires: 600",
			"Allow: INVITE, ACK, CANCEL, BYE, UPDATE, INFO, OPTIONS, REFER, NOTIFY",
			"User-Agent: "+ua,
			"Content-Length: 0")
	}
	return scenarioHead + "<scenario name=\"corpus register\">\n" + reg(1, "") +
		"  <recv response=\"401\" auth=\"true\"/>\n" + reg(2, "[authentication]\n") +
		"  <recv response=\"200\"/>\n</scenario>\n"
}

// uasScenario answers the INVITE and the four re-INVITEs with the callee's bodies.
func uasScenario(ua string, bodies corpusMessages) string {
	var b strings.Builder
	b.WriteString(scenarioHead + "<scenario name=\"corpus callee\">\n")
	for k, body := range bodies {
		to := "[last_To:]"
		if k == 0 {
			to = "[last_To:];tag=[pid]CalleeTag[call_number]"
		}
		b.WriteString("  <recv request=\"INVITE\" crlf=\"true\"/>\n")
		b.WriteString(cdata(
			"SIP/2.0 200 OK", "[last_Via:]", "[last_From:]", to, "[last_Call-ID:]", "[last_CSeq:]", "[last_Record-Route:]",
			"Contact: <sip:callee@[local_ip]:[local_port];transport=[transport]>",
			"Allow: INVITE, ACK, CANCEL, BYE, UPDATE, INFO, OPTIONS",
			"User-Agent: "+ua, "Content-Type: application/sdp", "Content-Length: [len]", "", sdpLines(body)))
		b.WriteString("  <recv request=\"ACK\" crlf=\"true\"/>\n")
	}
	b.WriteString("  <recv request=\"BYE\"/>\n")
	b.WriteString(strings.Replace(cdata("SIP/2.0 200 OK", "[last_Via:]", "[last_From:]", "[last_To:]", "[last_Call-ID:]", "[last_CSeq:]",
		"Content-Length: 0"), " retrans=\"500\"", "", 1))
	b.WriteString("  <timewait milliseconds=\"500\"/>\n</scenario>\n")
	return b.String()
}

// uacScenario places the call: the service dials the room through the node, or the room dials
// sip:meeting@far.test answering the node's 407; after the ACK it waits for the test's INFO
// (media checked), then content on, content off, hold, resume, BYE.
func uacScenario(p corpusPair, roomCalls bool, ua, domain string, bodies corpusMessages) string {
	ruri, from := "sip:"+p.roomName+"@[remote_ip]:[remote_port]", "\"Service\" <sip:meeting@service.example>"
	if roomCalls {
		ruri, from = "sip:meeting@far.test", "\"Room\" <sip:"+p.roomName+"@"+domain+">"
	}
	from += ";tag=[pid]CallerTag[call_number]"
	to := "<" + ruri + ">"
	invite := func(cseq int, auth, body string) string {
		return cdata("INVITE "+ruri+" SIP/2.0", "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
			"From: "+from, "To: "+to, "Call-ID: [call_id]", "CSeq: "+strconv.Itoa(cseq)+" INVITE",
			"Contact: <sip:caller@[local_ip]:[local_port]>", auth+"Max-Forwards: 70",
			"Allow: INVITE, ACK, CANCEL, BYE, UPDATE, INFO, OPTIONS",
			"User-Agent: "+ua, "Content-Type: application/sdp", "Content-Length: [len]", "", sdpLines(body))
	}
	inDialog := func(method string, cseq int, body string) string {
		lines := []string{method + " [next_url] SIP/2.0", "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
			"From: " + from, "To: " + to + "[peer_tag_param]", "Call-ID: [call_id]", "CSeq: " + strconv.Itoa(cseq) + " " + method,
			"[routes]", "Contact: <sip:caller@[local_ip]:[local_port]>", "Max-Forwards: 70", "User-Agent: " + ua}
		if body == "" {
			lines = append(lines, "Content-Length: 0")
		} else {
			lines = append(lines, "Content-Type: application/sdp", "Content-Length: [len]", "", sdpLines(body))
		}
		s := cdata(lines...)
		if method == "ACK" {
			s = strings.Replace(s, " retrans=\"500\"", "", 1)
		}
		return s
	}
	var b strings.Builder
	b.WriteString(scenarioHead + "<scenario name=\"corpus caller\">\n")
	cseq := 1
	if roomCalls {
		b.WriteString(invite(cseq, "", bodies[0]))
		b.WriteString("  <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"407\" auth=\"true\"/>\n")
		b.WriteString(strings.Replace(cdata("ACK "+ruri+" SIP/2.0", "[last_Via:]", "From: "+from, "[last_To:]", "Call-ID: [call_id]",
			"CSeq: 1 ACK", "Max-Forwards: 70", "Content-Length: 0"), " retrans=\"500\"", "", 1))
		cseq++
		b.WriteString(invite(cseq, "[authentication]\n", bodies[0]))
	} else {
		b.WriteString(invite(cseq, "", bodies[0]))
	}
	b.WriteString("  <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"180\" optional=\"true\"/>\n")
	b.WriteString("  <recv response=\"200\" rtd=\"true\" rrs=\"true\"/>\n")
	b.WriteString(inDialog("ACK", cseq, ""))
	b.WriteString("  <recv request=\"INFO\"/>\n")
	for k, body := range bodies[1:] {
		cseq++
		b.WriteString(inDialog("INVITE", cseq, body))
		b.WriteString("  <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"200\"/>\n")
		b.WriteString(inDialog("ACK", cseq, ""))
		if k == 0 {
			b.WriteString("  <recv request=\"INFO\"/>\n") // content media checked
		}
	}
	cseq++
	b.WriteString(inDialog("BYE", cseq, ""))
	b.WriteString("  <recv response=\"200\" crlf=\"true\"/>\n</scenario>\n")
	return b.String()
}

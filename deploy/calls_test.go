package deploy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// placeCall calls sip:room@domain through the node at via, from caller, to the room system
// (roomUA, registered to the cluster through another node), and asserts that the call is
// answered with 200: the node must find the registration (replicated from the node that holds
// the room's flow) and bridge the call to it. It then ACKs and hangs up.
//
// mediaLo-mediaHi is the node's media.ports: both sides must see the relay's ports in the SDP.
// TestDocker runs it through node2 for a room registered on node1 (the internal trunk).
func placeCall(t *testing.T, caller, roomUA *sipUA, via *net.UDPAddr, room, domain string, mediaLo, mediaHi int) {
	t.Helper()
	roomUA.mu.Lock()
	roomUA.answer = func(*sipMsg) (int, string) { return 200, "OK" }
	before := roomUA.invites
	roomUA.mu.Unlock()

	target := "sip:" + room + "@" + domain
	callID, fromTag := token(16), token(8)
	from := fmt.Sprintf("<sip:caller@%s>;tag=%s", caller.host, fromTag)
	start := time.Now()
	res, err := caller.do(via, sipReq{method: "INVITE", uri: target, hdrs: [][2]string{
		{"From", from}, {"To", "<" + target + ">"}, {"Call-ID", callID}, {"CSeq", "1 INVITE"},
		{"Contact", fmt.Sprintf("<sip:caller@%s:%d>", caller.host, caller.port)},
		{"Content-Type", "application/sdp"},
	}, body: sdp(caller.host, 42000)}, 30*time.Second)
	if err != nil {
		t.Fatalf("INVITE %s via %s: %v", target, via, err)
	}
	roomUA.mu.Lock()
	invites := roomUA.invites - before
	roomUA.mu.Unlock()
	if res.status != 200 {
		t.Fatalf("INVITE %s via %s: %s (the room saw %d INVITEs)", target, via, res, invites)
	}
	if invites == 0 {
		t.Fatalf("call answered 200 but the room never received an INVITE")
	}
	// Media is anchored: the answer the caller gets points at the node's relay ports, the offer
	// the room gets too, never at the other side's own port.
	if p := audioPort(res.body); p < mediaLo || p > mediaHi {
		t.Errorf("answer to the caller: audio port %d, want the relay's %d-%d\n%s", p, mediaLo, mediaHi, res.body)
	}
	roomUA.mu.Lock()
	offer := roomUA.lastInvite
	roomUA.mu.Unlock()
	if p := audioPort(offer); p < mediaLo || p > mediaHi {
		t.Errorf("offer to the room: audio port %d, want the relay's %d-%d\n%s", p, mediaLo, mediaHi, offer)
	}
	t.Logf("call to %s through %s answered 200 after %s", target, via, time.Since(start).Round(time.Millisecond))

	// In-dialog requests go to the node (the only hop we know), with the dialog's identifiers.
	to := res.get("To")
	uri := target
	if c := contacts(res); len(c) > 0 {
		uri = c[0]
	}
	var route [][2]string
	rr := res.all("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		route = append(route, [2]string{"Route", rr[i]})
	}
	dialog := func(method string, cseq int) sipReq {
		h := append([][2]string{{"From", from}, {"To", to}, {"Call-ID", callID},
			{"CSeq", fmt.Sprintf("%d %s", cseq, method)}}, route...)
		return sipReq{method: method, uri: uri, hdrs: h}
	}
	if err := caller.send(via, dialog("ACK", 1)); err != nil {
		t.Fatal(err)
	}
	bye, err := caller.do(via, dialog("BYE", 2), 10*time.Second)
	if err != nil || bye.status != 200 {
		t.Fatalf("BYE: %v %v", bye, err)
	}
}

// audioPort is the port of the first m=audio line of an SDP body (0 if none).
func audioPort(sdp []byte) int {
	for _, l := range strings.Split(string(sdp), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "m=audio" {
			p, _ := strconv.Atoi(f[1])
			return p
		}
	}
	return 0
}

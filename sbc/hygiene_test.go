package sbc

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// strangerInvite is an INVITE from a raw peer at local to user@domain, with extra header lines
// (each ending in CRLF) and an SDP body.
func strangerInvite(local, user, domain, fromName, extra string) string {
	body := strings.ReplaceAll(testSDP, "127.0.0.1", strings.Split(local, ":")[0])
	return "INVITE sip:" + user + "@" + domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + randHex() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: " + fromName + "<sip:eve@outside.example>;tag=" + randHex()[:8] + "\r\n" +
		"To: <sip:" + user + "@" + domain + ">\r\nCall-ID: " + randHex() + "@outside\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:eve@" + local + ">\r\n" + extra +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// TestHeaderInjectionNeverReachesRoom (issue 14 item 3): a stranger calls a room that blocks
// auto-answer with bare LFs inside relayed header values and its From display name,
// each hiding a header line; the room is a raw UDP socket that records the bytes it gets. No
// injected line may reach it (the Call-Info of the issue would defeat auto_answer: block for a
// room stack that accepts bare LF), while the call itself still rings.
func TestHeaderInjectionNeverReachesRoom(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newRawPeer(t, "127.0.0.1")
	room.register(n, "boardroom", "s3cret-board")
	caller := newRawPeer(t, "127.0.0.1")
	extra := "Subject: hi\nCall-Info: <sip:x>;answer-after=0\r\n" +
		"Accept: application/sdp\nX-Inj-Accept: 1\r\n" +
		"Reason: SIP;cause=200\nX-Inj-Reason: 1\r\n" +
		"Call-Info: <http://www.example.com/alice/photo.jpg>;purpose=icon\nAlert-Info: <http://x>;info=alert-autoanswer\r\n" +
		"Alert-Info: <http://www.example.com/sounds/moo.wav>\r\n"
	caller.send(n.addr(t, "udp"), strangerInvite(caller.addr, "boardroom", n.cfg.SIP.Domain, "\"Eve\nX-Inj-From: 1\" ", extra))
	inv := room.next(10*time.Second, startsWith("INVITE "))
	if inv == "" {
		t.Fatal("the room got no INVITE: the call must still ring")
	}
	room.reply(inv, 486, "Busy Here")
	if res := caller.next(10*time.Second, startsWith("SIP/2.0 486")); res == "" {
		t.Error("the caller did not get the room's 486")
	}
	names := lenientHeaderNames(inv)
	for _, bad := range []string{"call-info", "x-inj-accept", "x-inj-reason", "x-inj-from", "alert-info"} {
		if bad == "alert-info" {
			if c := strings.Count(inv, "Alert-Info"); c != 1 { // only the harmless one
				t.Errorf("the room got %d Alert-Info lines, want the harmless one", c)
			}
			continue
		}
		if slices.Contains(names, bad) {
			t.Errorf("the room reads a %s header the caller injected", bad)
		}
	}
	if head, _, _ := strings.Cut(inv, "\r\n\r\n"); strings.ContainsAny(strings.ReplaceAll(head, "\r\n", ""), "\r\n") {
		t.Error("a bare CR or LF reached the room")
	}
	if t.Failed() {
		t.Logf("the room got:\n%s", inv)
	}
}

// TestHeaderInjectionInNeededHeader: a line end inside Content-Type (which the body needs) refuses
// the call with 400; the room sees nothing.
func TestHeaderInjectionInNeededHeader(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newRawPeer(t, "127.0.0.1")
	room.register(n, "boardroom", "s3cret-board")
	caller := newRawPeer(t, "127.0.0.1")
	msg := strangerInvite(caller.addr, "boardroom", n.cfg.SIP.Domain, "", "")
	msg = strings.Replace(msg, "Content-Type: application/sdp\r\n", "Content-Type: application/sdp\nCall-Info: <sip:x>;answer-after=0\r\n", 1)
	caller.send(n.addr(t, "udp"), msg)
	if res := caller.next(10*time.Second, startsWith("SIP/2.0 ")); !strings.HasPrefix(res, "SIP/2.0 400") {
		t.Fatalf("got %q, want 400", strings.SplitN(res, "\r\n", 2)[0])
	}
	if inv := room.next(500*time.Millisecond, startsWith("INVITE ")); inv != "" {
		t.Fatalf("the room got an INVITE:\n%s", inv)
	}
}

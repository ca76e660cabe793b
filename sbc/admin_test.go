package sbc

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
)

// adminGet fetches path from the node's admin API with the token.
func adminGet(t *testing.T, n *Node, token, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.AdminAddr()+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// metric returns the value of the first sample line that starts with prefix.
func metric(body, prefix string) string {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			f := strings.Fields(l)
			return f[len(f)-1]
		}
	}
	return ""
}

// TestAdminOnRunningNode: the node serves its admin API; without a token it answers 401;
// /metrics scraped during SIPp calls shows the call counters moving; the call appears in the
// records, the refusal of a scanner and a datagram that is not SIP in the events and metrics.
func TestAdminOnRunningNode(t *testing.T) {
	testpeer.Require(t, "sipp")
	cfg := callConfig(t)
	cfg.Admin.Token = "test-admin-token-0123456789abcdef"
	cfg.Rooms[0].DropIn = "allow" // the three SIPp calls overlap
	n := startNode(t, cfg)
	if code, _ := adminGet(t, n, "", "/api/v1/rooms"); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, body := adminGet(t, n, cfg.Admin.Token, "/api/v1/rooms"); code != 200 || !strings.Contains(body, "boardroom") {
		t.Fatalf("rooms: %d %s", code, body)
	}
	_, before := adminGet(t, n, cfg.Admin.Token, "/metrics")
	uas := sippRoom(t, n, "boardroom", "s3cret-board", "uas.xml", 3)
	sippCall(t, n, "boardroom", "uac.xml", 3)
	uas.wait(t)
	records(t, n, 3)
	_, after := adminGet(t, n, cfg.Admin.Token, "/metrics")
	attempts := `portcullis_call_attempts_total{direction="inbound"}`
	answered := `portcullis_call_outcomes_total{direction="inbound",outcome="answered"}`
	if metric(before, attempts) == metric(after, attempts) || metric(after, answered) != "3" {
		t.Fatalf("call counters did not move: attempts %q -> %q, answered %q", metric(before, attempts), metric(after, attempts), metric(after, answered))
	}
	code, body := adminGet(t, n, cfg.Admin.Token, "/api/v1/records?room=boardroom")
	if code != 200 {
		t.Fatalf("records: %d %s", code, body)
	}
	var recs struct {
		Items []json.RawMessage `json:"items"`
	}
	_ = json.Unmarshal([]byte(body), &recs)
	if len(recs.Items) != 3 {
		t.Fatalf("records: %s", body)
	}
	// a scanner's OPTIONS is refused and shows up in the events
	sipRequestUA(t, n.addr(t, "udp"), "OPTIONS", "friendly-scanner")
	waitFor(t, func() bool {
		_, ev := adminGet(t, n, cfg.Admin.Token, "/api/v1/events")
		return strings.Contains(ev, "scanner-user-agent")
	})
	// a datagram that is not SIP is counted by the edge and shows up in the events
	c, err := net.Dial("udp", n.addr(t, "udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, m := adminGet(t, n, cfg.Admin.Token, "/metrics")
		_, ev := adminGet(t, n, cfg.Admin.Token, "/api/v1/events?rule=malformed")
		return metric(m, `portcullis_edge_refused_total{reason="not_sip"}`) == "1" && strings.Contains(ev, "is not SIP")
	})
	// the kernel's drops on the SIP socket are exported (none here)
	_, m := adminGet(t, n, cfg.Admin.Token, "/metrics")
	if got := metric(m, `portcullis_edge_socket_drops_total{listener="`+n.addr(t, "udp")+`"}`); got != "0" {
		t.Fatalf("socket drops metric %q", got)
	}
}

// sipRequestUA sends one request with the given User-Agent and does not wait for an answer.
func sipRequestUA(t *testing.T, addr, method, ua string) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(rawRequest(method, "100", "100", ua, addr, c.LocalAddr().String()))); err != nil {
		t.Fatal(err)
	}
}

package sbc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/sinks"
)

// Call records and security events leaving the box (issue #17), through real nodes.

// idSet counts deliveries per dedup key, and the items' types.
type idSet struct {
	mu    sync.Mutex
	ids   map[string]int
	types map[string]int
	bad   []string
}

func newIDSet() *idSet { return &idSet{ids: map[string]int{}, types: map[string]int{}} }

func (s *idSet) add(id, typ string) {
	s.mu.Lock()
	s.ids[id]++
	s.types[typ]++
	s.mu.Unlock()
}

func (s *idSet) missing(ids []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if s.ids[id] == 0 {
			n++
		}
	}
	return n
}

func (s *idSet) counts() (distinct, total, events int, bad []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.ids {
		total += n
	}
	return len(s.ids), total, s.types[sinks.TypeEvent], append([]string(nil), s.bad...)
}

// hookReceiver is an HTTP webhook receiver that checks the signature.
func hookReceiver(t *testing.T, secret string) (*idSet, string) {
	t.Helper()
	got := newIDSet()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Portcullis-Signature") != sinks.Sign([]byte(secret), body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			got.mu.Lock()
			got.bad = append(got.bad, "bad signature")
			got.mu.Unlock()
			return
		}
		var items []struct{ ID, Type string }
		if err := json.Unmarshal(body, &items); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, it := range items {
			got.add(it.ID, it.Type)
		}
	}))
	t.Cleanup(srv.Close)
	return got, srv.URL + "/portcullis"
}

var sdIDRe = regexp.MustCompile(`^<\d+>1 \S+ \S+ portcullis - \S+ \[portcullis@32473 id="([^"]+)" type="([^"]+)"\] \{`)

// syslogReceiver is a TCP syslog receiver reading octet-counted frames (RFC 6587).
func syslogReceiver(t *testing.T) (*idSet, string) {
	t.Helper()
	got := newIDSet()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString(' ')
					if err != nil {
						return
					}
					n, err := strconv.Atoi(l[:len(l)-1])
					if err != nil || n <= 0 || n > 1<<20 {
						return
					}
					msg := make([]byte, n)
					if _, err := io.ReadFull(br, msg); err != nil {
						return
					}
					if m := sdIDRe.FindSubmatch(msg); m != nil {
						got.add(string(m[1]), string(m[2]))
					} else {
						got.mu.Lock()
						got.bad = append(got.bad, string(msg))
						got.mu.Unlock()
					}
				}
			}()
		}
	}()
	return got, "tcp://" + ln.Addr().String()
}

// endCalls writes n call records through node (the cluster's apply path, as a call's end
// does) and returns how many writes it sent again after an unknown outcome.
//
// A write refused before any leader took it (ErrNoLeader, while the cluster elects one) is
// simply sent again. A write whose outcome is unknown (the leader died, or the forwarding
// attempt timed out, after the leader took it) may have been applied, and an EndCall is not
// idempotent: a second one appends a second record. So the call's record is looked for in a
// linearizable read first (callEnded), and the write is sent again only if it is absent. The
// first write may still land after that read (the leader had it queued): the caller allows one
// extra record per write sent again, and no more.
func endCalls(t *testing.T, node *Node, from, n int) (resent int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		r := state.CallRecord{Call: state.Call{ID: fmt.Sprintf("sink-call-%d", i), Room: "boardroom", Direction: state.Inbound,
			From: "sip:visitor@partner.example", To: "sip:boardroom@video.test", Node: "edge1", Started: time.Now().Add(-time.Minute)},
			Ended: time.Now(), Duration: time.Minute, EndReason: "bye", Status: 200}
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := node.Store().Propose(context.Background(), state.EndCall(r)) // bounded by the cluster's ApplyTimeout
			if err == nil {
				break
			}
			if !errors.Is(err, cluster.ErrNoLeader) {
				if callEnded(t, node, r.ID) {
					t.Logf("record %d: %v; applied after all", i, err)
					break
				}
				resent++
				t.Logf("record %d: %v; not applied (yet): sending it again", i, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("record %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // not an assert: a pause between retries while a leader is elected
		}
	}
	return resent
}

// callEnded reports whether node's state holds a record of call id after a consistent read
// (a barrier through the current leader: an entry a dead leader left uncommitted is then
// either committed or gone for good).
func callEnded(t *testing.T, node *Node, id string) bool {
	t.Helper()
	waitUntil(t, 60*time.Second, "a consistent read", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return node.cluster.Consistent(ctx) == nil
	})
	for _, r := range node.Store().State().Records(state.RecordQuery{Limit: 1 << 20}) {
		if r.ID == id {
			return true
		}
	}
	return false
}

// checkRecords checks that node's state holds a record of each of the calls (ids sink-call-0
// up to calls-1) and at most extra records more (writes sent again after an unknown outcome
// may both have landed). It returns the records' dedup keys.
func checkRecords(t *testing.T, node *Node, calls, extra int) []string {
	t.Helper()
	recs := node.Store().State().Records(state.RecordQuery{Limit: 1 << 20})
	seen := map[string]int{}
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		seen[r.ID]++
		ids = append(ids, sinks.RecordID(r.Seq))
	}
	for i := range calls {
		if seen[fmt.Sprintf("sink-call-%d", i)] == 0 {
			t.Fatalf("no record of call %d among %d records", i, len(recs))
		}
	}
	if len(seen) != calls || len(recs) > calls+extra {
		t.Fatalf("%d records of %d calls in the state; %d writes were sent again after an unknown outcome", len(recs), len(seen), extra)
	}
	if len(recs) > calls {
		t.Logf("%d records of %d calls: %d writes sent again after an unknown outcome had landed the first time", len(recs), calls, len(recs)-calls)
	}
	return ids
}

// callsRecorded is how many distinct calls have a record in node's state.
func callsRecorded(node *Node) int {
	seen := map[string]bool{}
	for _, r := range node.Store().State().Records(state.RecordQuery{Limit: 1 << 20}) {
		seen[r.ID] = true
	}
	return len(seen)
}

// TestSinksAcrossLeaderKill: three nodes share a webhook and a TCP syslog receiver. The records
// of 1,000 calls are written while the leader ships them; the leader is killed mid-stream and
// calls keep ending through a survivor. The new leader resumes from the replicated cursor:
// both receivers get every record at least once (duplicates carry the same dedup key), and
// the cursor ends at the last record on every survivor.
func TestSinksAcrossLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster test skipped in -short mode")
	}
	hook, hookURL := hookReceiver(t, "sink-test-secret-0123456789")
	sys, sysAddr := syslogReceiver(t)
	conf := func(t *testing.T) config.Config {
		cfg := haConfig(t)
		cfg.Sinks = []config.Sink{
			{Name: "billing", Type: "webhook", URL: hookURL, Secret: "sink-test-secret-0123456789", Streams: []string{"records"}},
			{Name: "siem", Type: "syslog", Address: sysAddr, Streams: []string{"records"}},
		}
		return cfg
	}
	nodes := startCluster(t, conf)
	leader := -1
	waitUntil(t, 10*time.Second, "a leader", func() bool {
		for i, n := range nodes {
			if n.cluster.IsLeader() {
				leader = i
				return true
			}
		}
		return false
	})
	survivor := nodes[(leader+1)%3]
	resent := endCalls(t, survivor, 0, 400)
	// Mid-stream: the leader has shipped some of the records, not necessarily all.
	waitUntil(t, 30*time.Second, "the leader to ship records", func() bool { d, _, _, _ := hook.counts(); return d > 0 })
	d, _, _, _ := hook.counts()
	t.Logf("killing the leader %s after it delivered %d of 400 records", nodes[leader].cfg.Node.ID, d)
	nodes[leader].Close()
	resent += endCalls(t, survivor, 400, 600)
	// A write forwarded to the leader returns once the leader applied it: the survivor may
	// apply the last ones a moment later.
	waitUntil(t, 10*time.Second, "every call's record in the survivor's state", func() bool {
		return callsRecorded(survivor) == 1000
	})
	ids := checkRecords(t, survivor, 1000, resent)
	last := uint64(len(ids)) // Seqs run from 1 with no gap
	for name, got := range map[string]*idSet{"webhook": hook, "syslog": sys} {
		waitUntil(t, 60*time.Second, name+" receiver to get every record", func() bool { return got.missing(ids) == 0 })
		distinct, total, _, bad := got.counts()
		if len(bad) > 0 || distinct != len(ids) {
			t.Fatalf("%s: %d distinct records of %d, malformed %q", name, distinct, len(ids), bad)
		}
		t.Logf("%s: %d records, %d deliveries (%d sent again after the leader change)", name, distinct, total, total-distinct)
	}
	for i, n := range nodes {
		if i == leader {
			continue
		}
		waitUntil(t, 30*time.Second, "the replicated cursors at the last record", func() bool {
			st := n.Store().State()
			return st.SinkCursor("billing") == last && st.SinkCursor("siem") == last
		})
	}
}

// TestSinkFileAcrossRestart: one node writes every call record to a JSON-lines file and
// security events (scanner requests from 20 sources) to a syslog receiver. The node stops and
// starts again on the same data dir: the file has every record at least once, and the node
// resumes from its cursor rather than writing the whole record log again.
func TestSinkFileAcrossRestart(t *testing.T) {
	sys, sysAddr := syslogReceiver(t)
	cfg := testConfig(t)
	path := filepath.Join(t.TempDir(), "records.jsonl")
	cfg.Sinks = []config.Sink{
		{Name: "archive", Type: "file", Path: path, Streams: []string{"records"}},
		{Name: "siem", Type: "syslog", Address: sysAddr, Streams: []string{"events"}},
	}
	n := startNode(t, cfg)
	resent := endCalls(t, n, 0, 1000)
	last := uint64(len(checkRecords(t, n, 1000, resent)))
	waitUntil(t, 30*time.Second, "the file sink to catch up", func() bool {
		return n.Store().State().SinkCursor("archive") == last
	})
	// Scanners from 20 addresses: each refusal is a security event shipped by this node.
	sipAddr := n.addr(t, "udp")
	for i := 2; i < 22; i++ {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(i))}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(sipAddr)))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "OPTIONS sip:100@video.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.%d:5060;branch=z9hG4bK-scan%d\r\n"+
			"From: <sip:scan@127.0.0.%d>;tag=s%d\r\nTo: <sip:100@video.test>\r\nCall-ID: scan-%d\r\nCSeq: 1 OPTIONS\r\n"+
			"Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n", i, i, i, i, i)
		c.Close()
	}
	waitUntil(t, 30*time.Second, "security events at the syslog receiver", func() bool {
		_, _, ev, _ := sys.counts()
		return ev >= 10
	})
	_, _, ev, _ := sys.counts()
	t.Logf("%d security events shipped to syslog", ev)
	_, m := adminGet(t, n, cfg.Admin.Token, "/metrics")
	for _, want := range []string{fmt.Sprintf(`portcullis_sink_delivered_total{sink="archive",stream="records"} %d`, last),
		`portcullis_sink_lag{sink="archive"} 0`, `portcullis_sink_dropped_total{sink="siem",stream="events"} 0`,
		`portcullis_sink_dropped_total{sink="archive",stream="records"} 0`} {
		if !strings.Contains(m, want) {
			t.Fatalf("/metrics lacks %s:\n%s", want, m)
		}
	}
	n.Close()

	n2 := startNode(t, cfg)
	resent += endCalls(t, n2, 1000, 10)
	ids := checkRecords(t, n2, 1010, resent)
	waitUntil(t, 30*time.Second, "the file sink after the restart", func() bool {
		return n2.Store().State().SinkCursor("archive") == uint64(len(ids))
	})
	n2.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := newIDSet()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var it struct{ ID, Type string }
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got.add(it.ID, it.Type)
	}
	if got.missing(ids) != 0 {
		t.Fatalf("%d records, %d missing from the file", len(ids), got.missing(ids))
	}
	distinct, total, _, _ := got.counts()
	if total-distinct > 100 { // at most a batch again, not the whole log
		t.Fatalf("%d lines for %d records: the restarted node shipped the log again", total, distinct)
	}
	t.Logf("file: %d records, %d lines across a restart", distinct, total)
}

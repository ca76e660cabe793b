package sinks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

var t0 = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

// addRecords ends n calls through the store (the path a node's calls take) and returns their
// records' dedup keys.
func addRecords(t *testing.T, st state.Store, from, n int) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; i++ {
		r := state.CallRecord{Call: state.Call{ID: fmt.Sprintf("call-%d", i), Room: "boardroom", Direction: state.Inbound,
			From: fmt.Sprintf("sip:visitor%d@partner.example", i), To: "sip:boardroom@video.test", Node: "edge1",
			Started: t0.Add(time.Duration(i) * time.Second)},
			Ended: t0.Add(time.Duration(i)*time.Second + time.Minute), Duration: time.Minute, EndReason: "bye", Status: 200}
		if err := st.Propose(context.Background(), state.EndCall(r)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range st.State().Records(state.RecordQuery{Newest: true, Limit: n}) {
		ids = append(ids, RecordID(r.Seq))
	}
	return ids
}

// startShipper runs a shipper over st until the test ends.
func startShipper(t *testing.T, st state.Store, specs []Spec, events <-chan guard.Event, log *slog.Logger) *Shipper {
	t.Helper()
	sh, err := New(specs, Options{Node: "edge1", Store: st, Poll: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sh.Run(ctx, events)
	t.Cleanup(func() {
		cancel()
		sh.Wait()
		sh.Close()
	})
	return sh
}

func stats(sh *Shipper, name string) Stats {
	for _, s := range sh.Stats() {
		if s.Name == name {
			return s
		}
	}
	return Stats{}
}

func fast(s Spec) Spec {
	s.RetryMin, s.RetryMax, s.Timeout = 20*time.Millisecond, 200*time.Millisecond, 5*time.Second
	return s
}

// TestRecordsReachEverySink: the records of 1,000 calls reach a syslog receiver over UDP, TCP
// and TLS, a webhook (signature checked) and a file, each record at least once, every message
// well formed; the cursor of each sink ends at the last record.
func TestRecordsReachEverySink(t *testing.T) {
	st := state.NewLocal()
	srvTLS, cliTLS := testTLS(t)
	udp, tcp, tlsRcv := newSyslogUDP(t), newSyslogStream(t, nil), newSyslogStream(t, srvTLS)
	hook := newHookServer(t, "billing-secret-0123456789", "X-Billing-Signature")
	path := filepath.Join(t.TempDir(), "cdr", "records.jsonl")
	ids := addRecords(t, st, 0, 500) // records that exist before the shipper starts
	sh := startShipper(t, st, []Spec{
		fast(Spec{Name: "udp", Kind: KindSyslog, Records: true, Network: "udp", Address: udp.pc.LocalAddr().String(), MaxMessage: 8192, Batch: 20}),
		fast(Spec{Name: "tcp", Kind: KindSyslog, Records: true, Network: "tcp", Address: tcp.ln.Addr().String()}),
		fast(Spec{Name: "tls", Kind: KindSyslog, Records: true, Network: "tls", Address: tlsRcv.ln.Addr().String(), TLS: cliTLS}),
		fast(Spec{Name: "hook", Kind: KindWebhook, Records: true, URL: hook.url(), Secret: []byte("billing-secret-0123456789"), SignatureHeader: "X-Billing-Signature"}),
		fast(Spec{Name: "file", Kind: KindFile, Records: true, Path: path}),
	}, nil, nil)
	ids = append(ids, addRecords(t, st, 500, 500)...) // and records made while it ships
	if len(ids) != 1000 {
		t.Fatalf("%d records", len(ids))
	}
	for name, c := range map[string]*collector{"udp": udp.collector, "tcp": tcp.collector, "tls": tlsRcv.collector, "hook": hook.collector} {
		testutil.EventuallyWithin(t, 30*time.Second, name+" receiver to get every record", func() bool { return c.missing(ids) == 0 })
		distinct, total, bad := c.stats()
		if len(bad) > 0 || distinct != 1000 {
			t.Fatalf("%s: %d distinct, malformed %q", name, distinct, bad)
		}
		t.Logf("%s: %d records, %d deliveries", name, distinct, total)
	}
	testutil.EventuallyWithin(t, 30*time.Second, "every cursor at the last record", func() bool {
		for _, n := range []string{"udp", "tcp", "tls", "hook", "file"} {
			if st.State().SinkCursor(n) != 1000 || stats(sh, n).Lag != 0 {
				return false
			}
		}
		return true
	})
	file := readLines(t, path)
	if file.missing(ids) != 0 {
		t.Fatalf("file lacks %d records", file.missing(ids))
	}
	for _, n := range []string{"udp", "tcp", "tls", "hook", "file"} {
		if s := stats(sh, n); s.Delivered[Records] != 1000 || s.Dropped[Records] != 0 {
			t.Fatalf("%s stats %+v", n, s)
		}
	}
}

// readLines reads a JSON-lines file into a collector.
func readLines(t *testing.T, paths ...string) *collector {
	t.Helper()
	c := newCollector()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var env struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &env); err != nil || env.ID == "" {
				c.fail("line %q: %v", sc.Text(), err)
				continue
			}
			c.add(env.ID)
		}
		f.Close()
	}
	return c
}

// TestReceiverDownLosesNothing: the webhook and the TCP syslog receiver go down (listener
// closed, connections refused) for 30 s (3 s with -short) while calls keep ending; the sinks
// retry with backoff and, once the receivers are back, every record arrives. Nothing is
// dropped: the records wait in the state, behind the cursor.
func TestReceiverDownLosesNothing(t *testing.T) {
	outage := 30 * time.Second
	if testing.Short() {
		outage = 3 * time.Second
	}
	st := state.NewLocal()
	hook := newHookServer(t, "", "")
	tcp := newSyslogStream(t, nil)
	tcpAddr := tcp.ln.Addr().String()
	var logs lockedBuf
	log := slog.New(slog.NewTextHandler(&logs, nil))
	sh := startShipper(t, st, []Spec{
		{Name: "hook", Kind: KindWebhook, Records: true, URL: hook.url(), RetryMin: 100 * time.Millisecond, RetryMax: 2 * time.Second, Batch: 50},
		{Name: "tcp", Kind: KindSyslog, Records: true, Network: "tcp", Address: tcpAddr, RetryMin: 100 * time.Millisecond, RetryMax: 2 * time.Second, Batch: 50},
	}, nil, log)
	ids := addRecords(t, st, 0, 200)
	testutil.EventuallyWithin(t, 20*time.Second, "the first records", func() bool { return hook.missing(ids) == 0 && tcp.missing(ids) == 0 })

	hook.down()
	tcp.ln.Close()
	// Close the accepted connection too: the receiver is gone, not just its listener.
	tcp.closeConns()
	downAt := time.Now()
	for i := 0; i < 8; i++ { // calls keep ending through the outage
		ids = append(ids, addRecords(t, st, 200+i*100, 100)...)
		time.Sleep(outage / 10)
	}
	testutil.EventuallyWithin(t, outage, "failed attempts while down", func() bool {
		return stats(sh, "hook").Failures > 2 && stats(sh, "tcp").Failures > 2
	})
	for time.Since(downAt) < outage {
		time.Sleep(100 * time.Millisecond)
	}
	if lag := stats(sh, "hook").Lag; lag == 0 {
		t.Fatal("no lag while the webhook receiver was down")
	}
	hook.up()
	tcp2 := newSyslogStreamAt(t, tcpAddr)
	testutil.EventuallyWithin(t, 30*time.Second, "every record after the outage", func() bool {
		return hook.missing(ids) == 0 && allIn(ids, tcp.collector, tcp2.collector)
	})
	// A receiver holds a batch before its answer reaches the shipper, which counts the batch
	// delivered only then: wait for the counters too, not just for the receivers.
	testutil.EventuallyWithin(t, 30*time.Second, "the shipper to count every record delivered", func() bool {
		return stats(sh, "hook").Delivered[Records] >= 1000 && stats(sh, "tcp").Delivered[Records] >= 1000
	})
	for _, n := range []string{"hook", "tcp"} {
		s := stats(sh, n)
		if s.Dropped[Records] != 0 || s.Delivered[Records] != 1000 {
			t.Fatalf("%s: %+v", n, s)
		}
		t.Logf("%s: %d failed attempts during a %s outage, lag now %d", n, s.Failures, outage, s.Lag)
	}
	if strings.Count(logs.String(), "sink delivery failed") == 0 {
		t.Fatal("the failures were not logged")
	}
}

// allIn reports whether every id reached one of the collectors.
func allIn(ids []string, cs ...*collector) bool {
	for _, id := range ids {
		got := false
		for _, c := range cs {
			c.mu.Lock()
			got = got || c.ids[id] > 0
			c.mu.Unlock()
		}
		if !got {
			return false
		}
	}
	return true
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

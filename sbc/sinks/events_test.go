package sinks

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

func scanEvent(i int) guard.Event {
	return guard.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Source: fmt.Sprintf("203.0.113.%d:5060", i%250+1),
		Transport: "UDP", Method: "OPTIONS", UserAgent: "friendly-scanner", Rule: "scanner-user-agent", Action: guard.Drop,
		Reason: "scanner User-Agent"}
}

// TestEventQueueDropsCounted: a sink with a queue of 4 events whose webhook receiver is down
// gets 200 security events: the node never blocks, the events over the bound are dropped and
// counted, and once the receiver is back every event that was kept arrives: delivered plus
// dropped is exactly what was published. A second sink with a large queue, up all along, gets
// all 200.
func TestEventQueueDropsCounted(t *testing.T) {
	st := state.NewLocal()
	hook := newHookServer(t, "", "")
	tcp := newSyslogStream(t, nil)
	events := make(chan guard.Event)
	sh := startShipper(t, st, []Spec{
		{Name: "tiny", Kind: KindWebhook, Events: true, URL: hook.url(), Queue: 4, Batch: 2, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond},
		fast(Spec{Name: "siem", Kind: KindSyslog, Events: true, Network: "tcp", Address: tcp.ln.Addr().String()}),
	}, events, nil)
	hook.down()
	start := time.Now()
	for i := range 200 {
		events <- scanEvent(i)
	}
	t.Logf("200 events published in %v with the receiver down", time.Since(start).Round(time.Microsecond))
	testutil.EventuallyWithin(t, 10*time.Second, "drops to be counted", func() bool { return stats(sh, "tiny").Dropped[Events] > 0 })
	hook.up()
	testutil.EventuallyWithin(t, 30*time.Second, "every kept event delivered", func() bool {
		s := stats(sh, "tiny")
		return s.Delivered[Events]+s.Dropped[Events] == 200 && s.Queued == 0
	})
	s := stats(sh, "tiny")
	distinct, _, bad := hook.stats()
	if len(bad) > 0 || uint64(distinct) != s.Delivered[Events] || s.Dropped[Events] < 190 {
		t.Fatalf("receiver got %d distinct (bad %q), stats %+v", distinct, bad, s)
	}
	t.Logf("tiny queue: %d delivered, %d dropped and counted", s.Delivered[Events], s.Dropped[Events])
	testutil.EventuallyWithin(t, 30*time.Second, "the roomy sink to get all 200", func() bool {
		d, _, _ := tcp.stats()
		return d == 200
	})
	// The receiver holds the last batch before the shipper has its answer and counts it.
	testutil.EventuallyWithin(t, 30*time.Second, "the roomy sink to count all 200 delivered", func() bool {
		return stats(sh, "siem").Delivered[Events] >= 200
	})
	if s := stats(sh, "siem"); s.Dropped[Events] != 0 || s.Delivered[Events] != 200 {
		t.Fatalf("siem: %+v", s)
	}
	// Events carry the node's dedup key and the event itself.
	for id := range hook.ids {
		if !strings.HasPrefix(id, "event-edge1-") {
			t.Fatalf("event id %q", id)
		}
	}
}

// TestFileRotation: a file sink with max_size 4 KiB and keep 2 rotates: no file grows past
// the bound, two rotated files are kept, and together with the live file they hold the newest
// records without a gap.
func TestFileRotation(t *testing.T) {
	st := state.NewLocal()
	path := filepath.Join(t.TempDir(), "records.jsonl")
	sh := startShipper(t, st, []Spec{fast(Spec{Name: "file", Kind: KindFile, Records: true, Path: path, MaxBytes: 4096, Keep: 2, Batch: 7})}, nil, nil)
	ids := addRecords(t, st, 0, 100)
	testutil.EventuallyWithin(t, 20*time.Second, "the file sink to catch up", func() bool { return stats(sh, "file").Delivered[Records] == 100 })
	paths := []string{path + ".2", path + ".1", path}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 4096 {
			t.Fatalf("%s is %d bytes", p, fi.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Fatalf("a third rotated file: %v", err)
	}
	got := readLines(t, paths...)
	distinct, total, bad := got.stats()
	if len(bad) > 0 || distinct != total || distinct < 10 {
		t.Fatalf("%d lines, %d distinct, bad %q", total, distinct, bad)
	}
	// The kept lines are the newest records: ids[0] is the newest.
	if got.missing(ids[:distinct]) != 0 {
		t.Fatalf("the kept files miss some of the newest %d records", distinct)
	}
}

// TestSecretsNeverLogged: a webhook whose URL carries a password and whose secret signs the
// body fails (receiver down): the failures are logged with the URL redacted, and neither the
// password nor the secret appears in the logs.
func TestSecretsNeverLogged(t *testing.T) {
	st := state.NewLocal()
	hook := newHookServer(t, "", "")
	addr := hook.addr
	hook.down()
	var logs bytes.Buffer
	var mu lockedBuf
	log := slog.New(slog.NewTextHandler(&mu, nil))
	sh := startShipper(t, st, []Spec{fast(Spec{Name: "hook", Kind: KindWebhook, Records: true,
		URL: "http://billing:pa55-word-XYZ@" + addr + "/hook?key=query-key-QRS", Secret: []byte("hmac-secret-ABC")})}, nil, log)
	addRecords(t, st, 0, 3)
	testutil.EventuallyWithin(t, 10*time.Second, "failed deliveries", func() bool { return stats(sh, "hook").Failures >= 2 })
	logs.WriteString(mu.String())
	out := logs.String()
	if !strings.Contains(out, "sink delivery failed") || !strings.Contains(out, "billing:xxxxx@") {
		t.Fatalf("logs: %s", out)
	}
	if strings.Contains(out, "pa55-word-XYZ") || strings.Contains(out, "hmac-secret-ABC") || strings.Contains(out, "query-key-QRS") {
		t.Fatalf("a secret in the logs: %s", out)
	}
}

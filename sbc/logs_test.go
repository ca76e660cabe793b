package sbc

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestNodeLogsAreReadable starts a node with its logs captured, in text and in JSON, and checks
// what an operator reads: Raft's lines carry formatted values (hclog.Fmt arguments formatted,
// the Raft node printed as its String, not as its exported fields) and no line names its
// component twice.
func TestNodeLogsAreReadable(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			out := &lockedBuffer{}
			var h slog.Handler = slog.NewTextHandler(out, nil)
			component, leader := "component=", `leader="Node at `
			if format == "json" {
				h = slog.NewJSONHandler(out, nil)
				component, leader = `"component":`, `"leader":"Node at `
			}
			lines := nodeLogs(t, h, out)
			for _, line := range lines {
				for _, bad := range []string{"%+v", "%!", "RestoreCommittedLogs", "EXTRA_VALUE"} {
					if strings.Contains(line, bad) {
						t.Errorf("unformatted value (%s) in %s", bad, line)
					}
				}
				if strings.Count(line, component) > 1 {
					t.Errorf("component named twice: %s", line)
				}
				if format == "json" {
					if k := duplicateKey(line); k != "" {
						t.Errorf("key %q written twice: %s", k, line)
					}
				}
				if strings.Contains(line, "entering leader state") && !strings.Contains(line, leader) {
					t.Errorf("leader not printed as its String: %s", line)
				}
			}
		})
	}
}

// nodeLogs starts a node logging to h and returns its log lines once it has a leader and an
// admin API.
func nodeLogs(t *testing.T, h slog.Handler, out *lockedBuffer) []string {
	t.Helper()
	n, err := New(testConfig(t), slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "entering leader state") || !strings.Contains(out.String(), "admin API listening") {
		if time.Now().After(deadline) {
			t.Fatalf("no leader or admin line in the logs:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return strings.Split(strings.TrimSpace(out.String()), "\n")
}

// duplicateKey returns a top-level key that a JSON log line holds twice ("" if none).
func duplicateKey(line string) string {
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := k.(string)
		if seen[key] {
			return key
		}
		seen[key] = true
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return ""
		}
	}
	return ""
}

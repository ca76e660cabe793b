package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

type stringer struct{ Hidden bool }

func (stringer) String() string { return "as String" }

// TestHCLogAdapterFormatsArguments: every value Raft logs reaches slog the way hclog would
// print it, and no key is written twice.
func TestHCLogAdapterFormatsArguments(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewJSONHandler(&buf, nil)), "raft", "node", "n1")
	servers := []raft.Server{{ID: "n1", Address: "127.0.0.1:7000"}}
	l.Named("transport").Named("pipeline").With("peer", "n2").Info("msg",
		"servers", hclog.Fmt("%+v", servers), "leader", stringer{}, "plain", struct{ A, B int }{1, 2},
		"hex", hclog.Hex(255), "quote", hclog.Quote("a b"), "err", errors.New("boom"), "node", stringer{},
		"odd")
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	want := map[string]any{
		"component": "raft", "node": "n1", "sub": "raft.transport.pipeline", "peer": "n2",
		"servers": "[{Suffrage:Voter ID:n1 Address:127.0.0.1:7000}]", "leader": "as String",
		"plain": "{A:1 B:2}", "hex": "0xff", "quote": `"a b"`, "err": "boom",
		"raft.transport.pipeline.node": "as String", hclog.MissingKey: "odd",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if n := strings.Count(buf.String(), `"sub":`); n != 1 {
		t.Errorf("sub written %d times: %s", n, buf.String())
	}
}

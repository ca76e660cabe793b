package sinks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// Item types, in the envelope and as syslog MSGID.
const (
	TypeRecord = "call_record"
	TypeEvent  = "security_event"
)

// Item is one record or event ready to send: Body is its JSON envelope, the same for every sink.
type Item struct {
	ID   string // dedup key: "record-<seq>" or "event-<node>-<boot>-<n>"
	Type string
	Time time.Time
	Body []byte
}

// Envelope is the JSON object every sink receives for one item (a webhook gets an array of
// them, a file one per line, syslog one per message).
type Envelope struct {
	ID     string            `json:"id"`
	Type   string            `json:"type"`
	Node   string            `json:"node"` // the node that shipped it
	Seq    uint64            `json:"seq,omitempty"`
	Record *state.CallRecord `json:"record,omitempty"`
	Event  *guard.Event      `json:"event,omitempty"`
}

// RecordID is the dedup key of the call record with this sequence.
func RecordID(seq uint64) string { return fmt.Sprintf("record-%d", seq) }

func recordItem(node string, r state.CallRecord) Item {
	id := RecordID(r.Seq)
	return Item{ID: id, Type: TypeRecord, Time: r.Ended, Body: mustJSON(Envelope{ID: id, Type: TypeRecord, Node: node, Seq: r.Seq, Record: &r})}
}

func eventItem(id, node string, e guard.Event) Item {
	return Item{ID: id, Type: TypeEvent, Time: e.Time, Body: mustJSON(Envelope{ID: id, Type: TypeEvent, Node: node, Event: &e})}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Records and events are plain structs: failing to marshal them is a programming error.
		panic(fmt.Sprintf("sinks: marshal: %v", err))
	}
	return b
}

package sinks

import (
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzFormatSyslog: whatever the dedup key, type, host name and body (record fields come from
// SIP headers a caller chose), the message is one well-formed RFC 5424 line whose structured
// data gives back the dedup key, and its UDP truncation keeps that key.
func FuzzFormatSyslog(f *testing.F) {
	f.Add("record-1", TypeRecord, "edge1", []byte(`{"id":"record-1"}`), 16)
	f.Add(`event-a"]\x`, TypeEvent, "node with spaces\x00", []byte("{}\n[x]"), 23)
	f.Add("", "", "", []byte(nil), 0)
	f.Fuzz(func(t *testing.T, id, typ, host string, body []byte, facility int) {
		if facility < 0 || facility > 23 {
			facility = 16
		}
		if typ != TypeEvent {
			typ = TypeRecord
		}
		if !utf8.ValidString(id) {
			return
		}
		it := Item{ID: id, Type: typ, Time: time.Unix(1764838800, 123456789), Body: body}
		msg := formatSyslog(nil, it, facility, host)
		got, err := checkSyslog(msg, false)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if got != id {
			t.Fatalf("id %q came back as %q", id, got)
		}
		// Real keys and node IDs are short: a datagram cut at the smallest max_message_size
		// still names the record.
		if len(id) <= 80 && len(host) <= 63 && len(msg) > 480 {
			if got, err := checkSyslog(msg[:480], false); err != nil || got != id {
				t.Fatalf("truncated: id %q came back as %q (%v)", id, got, err)
			}
		}
	})
}

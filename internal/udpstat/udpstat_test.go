package udpstat

import "testing"

func TestParse(t *testing.T) {
	const sample = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0100007F:4E20 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 12345 2 0000000000000000 7
  2: 0100007F:4E21 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 12346 2 0000000000000000 5
  3: 0100007F:1388 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 12347 2 0000000000000000 100
  4: garbage
`
	got := Parse([]byte(sample))
	want := []Socket{{20000, 12345, 7}, {20001, 12346, 5}, {5000, 12347, 100}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// FuzzParse: any table parses without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte("h\n  1: 0100007F:4E20 0:0 07 0:0 00:0 0 1000 0 12345 2 0 7\n"))
	f.Fuzz(func(t *testing.T, b []byte) { Parse(b) })
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheck: any file content loads or fails with an ErrInvalid error; it never panics.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"media:\n  bind: not-an-ip\n", "sip:\n  listen: [udp://0.0.0.0:70000]\n", "sip:\n  listen: [udp://[::1]:5060]\n",
		"turn:\n  allow_peers: [10.0.0.0/33]\n", "rooms:\n  - {name: r1, password: change-me-r1}\n",
		"guard:\n  deny: [192.0.2.0/24, 2001:db8::/32]\n", "a: &x [1]\nb: *x\n", "media: [1, 2]\n", "calls:\n  ring_timeout: soon\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, warns, err := Check(p, []string{"PORTCULLIS_SIP_DOMAN=x"})
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
		for _, w := range warns {
			_ = w.String()
		}
	})
}

// FuzzParseListen: any listener string parses or is refused with an error; never a panic.
func FuzzParseListen(f *testing.F) {
	for _, s := range []string{"udp://0.0.0.0:5060", "tcp://[::]:5060", "udp://0.0.0.0:70000", "tls://host:1", "udp://:", "udp://[::1]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if l, err := ParseListen(s); err == nil && (l.Addr.Port() == 0 || !l.Addr.IsValid()) {
			t.Fatalf("%q accepted as %v", s, l)
		}
	})
}

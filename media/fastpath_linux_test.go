package media

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/media/fastpath"
)

// TestCallOverKernelPath: with media.fastpath auto on a node allowed BPF, a
// call's RTP streams move to the kernel once latched, media keeps flowing both
// ways, the manager's figures count it, and the BYE removes every entry.
func TestCallOverKernelPath(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.FastPath = true })
	if m.Stats().FastPath != string(fastpath.ModeKernel) {
		if os.Getenv("PORTCULLIS_CI") != "" {
			t.Fatalf("kernel fast path refused in CI (runs as root): mode %q", m.Stats().FastPath)
		}
		t.Skipf("SKIPPED LOUDLY: kernel fast path not available here (uid %d)", os.Getuid())
	}
	a, b := newRoom(t, "roomA"), newRoom(t, "roomB")
	s, err := m.NewSession("call-k", nil)
	if err != nil {
		t.Fatal(err)
	}
	aDst, bDst := call(t, s, a, b, 1, "sendrecv", "sendrecv")
	seq := uint16(0)
	deadline := time.Now().Add(20 * time.Second)
	for m.fp.Entries() < 6 { // three RTP m-lines, two directions
		if time.Now().After(deadline) {
			t.Fatalf("%d kernel entries after %d exchanges, want 6", m.fp.Entries(), seq)
		}
		exchange(t, a, b, aDst, bDst, seq)
		seq++
	}
	const n = 20
	for range n {
		exchange(t, a, b, aDst, bDst, seq)
		seq++
	}
	st := s.Streams()
	for i := range 3 {
		if st[i].AToB.Packets != uint64(seq) || st[i].BToA.Packets != uint64(seq) {
			t.Fatalf("m-line %d counted %d/%d packets, peers sent %d each way", i, st[i].AToB.Packets, st[i].BToA.Packets, seq)
		}
	}
	s.Close()
	if got := m.fp.Entries(); got != 0 {
		t.Fatalf("%d kernel entries left after the BYE", got)
	}
	self := []byte("self")
	b.audio.send(b.audio.Conn.LocalAddr().(*net.UDPAddr).AddrPort(), self)
	a.audio.send(aDst[0], rtp(0, seq, "after bye"))
	if got, ok := b.audio.recv(2 * time.Second); !ok || !bytes.Equal(got, self) {
		t.Fatalf("B got %q after the BYE", got)
	}
	if ms := m.Stats(); ms.Packets < uint64(6*int(seq)) {
		t.Fatalf("manager counted %d packets, peers sent %d", ms.Packets, 6*int(seq))
	}
}

// TestFastPathRefusedFallsBack runs a node with media.fastpath auto as nobody
// (no CAP_BPF, no CAP_NET_ADMIN): the kernel refuses, the manager says
// userspace, and a call's media still flows.
func TestFastPathRefusedFallsBack(t *testing.T) {
	if os.Getenv("MEDIA_FASTPATH_CHILD") == "1" {
		m := newTestManager(t, func(c *Config) { c.FastPath = true })
		if got := m.Stats().FastPath; got != string(fastpath.ModeUserspace) {
			t.Fatalf("mode %q as uid %d, want userspace", got, os.Getuid())
		}
		a, b := newRoom(t, "roomA"), newRoom(t, "roomB")
		s, err := m.NewSession("call-u", nil)
		if err != nil {
			t.Fatal(err)
		}
		aDst, bDst := call(t, s, a, b, 1, "sendrecv", "sendrecv")
		for seq := range uint16(5) {
			exchange(t, a, b, aDst, bDst, seq)
		}
		os.Stdout.WriteString("FELL BACK\n")
		return
	}
	if os.Getuid() != 0 {
		// Not root: the parent itself is the refused node.
		m := newTestManager(t, func(c *Config) { c.FastPath = true })
		if got := m.Stats().FastPath; got != string(fastpath.ModeUserspace) {
			t.Skipf("SKIPPED LOUDLY: BPF allowed without root here (mode %q)", got)
		}
		return
	}
	dir, err := os.MkdirTemp("", "media-fastpath-child")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestFastPathRefusedFallsBack$", "-test.v")
	cmd.Env = append(os.Environ(), "MEDIA_FASTPATH_CHILD=1")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("FELL BACK")) {
		t.Fatalf("unprivileged node: %v\n%s", err, out)
	}
}

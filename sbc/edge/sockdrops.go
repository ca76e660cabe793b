//go:build linux

package edge

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// KernelDrops returns how many datagrams the kernel dropped from this socket's receive queue
// (the "drops" column of /proc/net/udp or udp6, found by the socket's inode): under a flood the
// queue overflows before the node sees anything, and this is the only trace of it. ok is false
// where procfs is not there to ask.
func (c *PacketConn) KernelDrops() (drops uint64, ok bool) {
	ino := c.inode()
	if ino == 0 {
		return 0, false
	}
	d, found := procUDPDrops(map[uint64]bool{ino: true})
	drops, ok = d[ino]
	return drops, ok && found
}

// inode is the socket's inode number (0 when it cannot be had, e.g. after close).
func (c *PacketConn) inode() uint64 {
	rc, err := c.UDPConn.SyscallConn()
	if err != nil {
		return 0
	}
	var ino uint64
	if err := rc.Control(func(fd uintptr) {
		var st syscall.Stat_t
		if syscall.Fstat(int(fd), &st) == nil {
			ino = uint64(st.Ino)
		}
	}); err != nil {
		return 0
	}
	return ino
}

// procUDPDrops reads /proc/net/udp and udp6 once and returns the drops of the sockets whose
// inodes are wanted; ok is false when neither table could be read.
func procUDPDrops(want map[uint64]bool) (drops map[uint64]uint64, ok bool) {
	drops = map[uint64]uint64{}
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ok = true
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			cols := bytes.Fields(sc.Bytes())
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
			if len(cols) < 13 {
				continue
			}
			ino, err := strconv.ParseUint(string(cols[9]), 10, 64)
			if err != nil || !want[ino] {
				continue
			}
			if d, err := strconv.ParseUint(string(cols[len(cols)-1]), 10, 64); err == nil {
				drops[ino] = d
			}
		}
	}
	return drops, ok
}

// socketDrops returns the kernel drops of each open socket of conns, by local address.
func socketDrops(conns []*PacketConn) map[string]uint64 {
	want := map[uint64]bool{}
	byIno := map[uint64]string{}
	for _, c := range conns {
		if ino := c.inode(); ino != 0 {
			want[ino] = true
			byIno[ino] = c.LocalAddr().String()
		}
	}
	out := map[string]uint64{}
	if len(want) == 0 {
		return out
	}
	d, _ := procUDPDrops(want)
	for ino, n := range d {
		out[byIno[ino]] = n
	}
	return out
}

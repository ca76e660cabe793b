//go:build linux

package edge

import (
	"syscall"

	"github.com/portcullis-sbc/portcullis/internal/udpstat"
)

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

// socketDrops returns the kernel drops of each open socket of conns, by local address, from
// one read of the kernel's tables.
func socketDrops(conns []*PacketConn) map[string]uint64 {
	byIno := map[uint64]string{}
	for _, c := range conns {
		if ino := c.inode(); ino != 0 {
			byIno[ino] = c.LocalAddr().String()
		}
	}
	out := map[string]uint64{}
	if len(byIno) == 0 {
		return out
	}
	socks, _ := udpstat.Read()
	for _, s := range socks {
		if addr, ok := byIno[s.Inode]; ok {
			out[addr] = s.Drops
		}
	}
	return out
}

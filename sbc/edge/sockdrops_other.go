//go:build !linux

package edge

// KernelDrops is not known off Linux (no /proc/net/udp).
func (c *PacketConn) KernelDrops() (uint64, bool) { return 0, false }

func socketDrops([]*PacketConn) map[string]uint64 { return nil }

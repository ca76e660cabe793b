//go:build !linux

package edge

// socketDrops knows nothing off Linux (no /proc/net/udp): portcullis_edge_socket_drops_total
// is not exported there.
func socketDrops([]*PacketConn) map[string]uint64 { return nil }

package relay

import "github.com/portcullis-sbc/portcullis/internal/udpstat"

// socketDrops sums the kernel's receive-queue drops of the UDP sockets whose local port is in
// [lo, hi]. ok is false where the kernel's tables cannot be read. Called from Stats, never per
// packet.
func socketDrops(lo, hi int) (total uint64, ok bool) {
	socks, ok := udpstat.Read()
	for _, s := range socks {
		if int(s.Port) >= lo && int(s.Port) <= hi {
			total += s.Drops
		}
	}
	return total, ok
}

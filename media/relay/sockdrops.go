package relay

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// socketDrops sums the "drops" column of /proc/net/udp and /proc/net/udp6 for
// sockets whose local port is in [lo, hi]. ok is false when neither file can
// be read (not Linux, or no procfs). Called from Stats, never per packet.
func socketDrops(lo, hi int) (total uint64, ok bool) {
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ok = true
		total += parseProcUDPDrops(b, lo, hi)
	}
	return total, ok
}

func parseProcUDPDrops(b []byte, lo, hi int) uint64 {
	var total uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 13 {
			continue
		}
		local := fields[1]
		i := bytes.LastIndexByte(local, ':')
		if i < 0 {
			continue
		}
		port, err := strconv.ParseUint(string(local[i+1:]), 16, 16)
		if err != nil || int(port) < lo || int(port) > hi {
			continue
		}
		d, err := strconv.ParseUint(string(fields[len(fields)-1]), 10, 64)
		if err == nil {
			total += d
		}
	}
	return total
}

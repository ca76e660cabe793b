// Package udpstat reads the kernel's per-socket UDP counters (/proc/net/udp and udp6): the
// receive-queue drops of each socket, which are the only trace of datagrams that arrived
// faster than a reader took them. The media relay sums them over its port range, the SIP edge
// reports them per listener. Read on a scrape or a stats call, never per packet.
package udpstat

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// Socket is one UDP socket as the kernel lists it.
type Socket struct {
	Port  uint16 // local port
	Inode uint64 // the socket's inode (fstat of its descriptor gives the same)
	Drops uint64 // datagrams dropped from its full receive queue
}

// Read returns the UDP sockets (IPv4 and IPv6) of this network namespace. ok is false when
// neither table can be read (not Linux, or no procfs).
func Read() (socks []Socket, ok bool) {
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ok = true
		socks = append(socks, Parse(b)...)
	}
	return socks, ok
}

// Parse reads one /proc/net/udp table; rows it cannot read are skipped.
func Parse(table []byte) []Socket {
	var out []Socket
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
		cols := bytes.Fields(sc.Bytes())
		if len(cols) < 13 {
			continue
		}
		local := cols[1]
		i := bytes.LastIndexByte(local, ':')
		if i < 0 {
			continue
		}
		port, err1 := strconv.ParseUint(string(local[i+1:]), 16, 16)
		ino, err2 := strconv.ParseUint(string(cols[9]), 10, 64)
		drops, err3 := strconv.ParseUint(string(cols[len(cols)-1]), 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out = append(out, Socket{Port: uint16(port), Inode: ino, Drops: drops})
	}
	return out
}

package wirecheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrTooLarge is returned for a message that does not fit in one UDP datagram of the capture.
var ErrTooLarge = errors.New("wirecheck: message too large for one datagram")

const maxDatagram = 65507

// WritePcap writes msgs as a classic pcap file (Ethernet), each message one IPv4/UDP datagram
// from 127.0.0.1:5060 to 127.0.0.2:5060, one second apart, in order.
func WritePcap(w io.Writer, msgs [][]byte) error {
	bw := bufio.NewWriter(w)
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 1<<18) // snaplen
	binary.LittleEndian.PutUint32(hdr[20:], 1)     // LINKTYPE_ETHERNET
	bw.Write(hdr[:])
	for i, m := range msgs {
		if len(m) > maxDatagram {
			return fmt.Errorf("%w: message %d has %d bytes", ErrTooLarge, i, len(m))
		}
		var rec [16]byte
		var eth [14 + 20 + 8]byte
		n := len(eth) + len(m)
		binary.LittleEndian.PutUint32(rec[0:], uint32(i))
		binary.LittleEndian.PutUint32(rec[8:], uint32(n))
		binary.LittleEndian.PutUint32(rec[12:], uint32(n))
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip := eth[14:34]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(m)))
		binary.BigEndian.PutUint16(ip[4:], uint16(i))
		ip[8], ip[9] = 64, 17
		copy(ip[12:], []byte{127, 0, 0, 1})
		copy(ip[16:], []byte{127, 0, 0, 2})
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[j:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		udp := eth[34:]
		binary.BigEndian.PutUint16(udp[0:], 5060)
		binary.BigEndian.PutUint16(udp[2:], 5060)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(m)))
		bw.Write(rec[:])
		bw.Write(eth[:])
		bw.Write(m)
	}
	return bw.Flush()
}

// Expert severities of Wireshark (_ws.expert.severity).
const (
	severityNote    = 0x400000
	severityWarning = 0x600000
)

// Tshark runs tshark (bin) with its SIP dissector over msgs, through a capture file in dir, and
// returns the problems it reports per message index: not dissected as SIP, a malformed packet,
// any expert info of warning or error severity, and notes other than an unrecognised
// (extension) header.
func Tshark(ctx context.Context, bin, dir string, msgs [][]byte) (map[int][]string, error) {
	p := filepath.Join(dir, "wirecheck.pcap")
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	if err := WritePcap(f, msgs); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-n", "-r", p, "-d", "udp.port==5060,sip", "-T", "fields",
		"-E", "separator=/t", "-E", "aggregator=|", "-E", "occurrence=a",
		"-e", "frame.number", "-e", "frame.protocols", "-e", "_ws.malformed", "-e", "_ws.expert.message", "-e", "_ws.expert.severity")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tshark: %w: %s", err, stderr.String())
	}
	found := map[int][]string{}
	seen := 0
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		fl := strings.Split(line, "\t")
		for len(fl) < 5 {
			fl = append(fl, "")
		}
		frame, err := strconv.Atoi(fl[0])
		if err != nil || frame < 1 || frame > len(msgs) {
			return nil, fmt.Errorf("tshark: unexpected line %q", line)
		}
		seen++
		i := frame - 1
		if !strings.Contains(":"+fl[1]+":", ":sip:") {
			found[i] = append(found[i], "not dissected as SIP ("+fl[1]+")")
		}
		if fl[2] != "" {
			found[i] = append(found[i], "malformed packet")
		}
		texts, sevs := strings.Split(fl[3], "|"), strings.Split(fl[4], "|")
		for k, s := range sevs {
			if s == "" {
				continue
			}
			sev, _ := strconv.ParseUint(s, 0, 32)
			text := ""
			if k < len(texts) {
				text = texts[k]
			}
			if sev >= severityWarning || (sev >= severityNote && !strings.HasPrefix(text, "Unrecognised SIP header")) {
				found[i] = append(found[i], fmt.Sprintf("expert %#x: %s", sev, text))
			}
		}
	}
	if seen != len(msgs) {
		return nil, fmt.Errorf("tshark: %d frames dissected, %d written", seen, len(msgs))
	}
	return found, nil
}

// Package fastpath forwards latched RTP in the kernel: a TC ingress eBPF
// program rewrites a datagram from a stream's latched peer into the datagram
// the relay would send to the other leg's latched peer, so steady-state media
// never crosses into userspace. Userspace (media/relay) keeps every decision:
// it latches, applies the RTP-bleed rules, handles the first packets, holds,
// re-INVITEs and RTCP, and only installs an entry for a direction once both
// legs' latches are final; it removes the entry on any change. The kernel
// forwards nothing but the exact latched source to the exact relay socket, and
// hands anything else (RTCP, DTLS, other payload types, fragments, IPv6, and
// UDP GSO/GRO aggregates, which carry several datagrams in one packet) to
// userspace unchanged.
//
// It is optional: [Open] fails cleanly (no CAP_BPF/CAP_NET_ADMIN, a kernel
// without TCX, a verifier refusal, not Linux) and the caller keeps the
// userspace path.
package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Mode names the media path in use, for logs and metrics.
type Mode string

// The two media paths.
const (
	ModeKernel    Mode = "kernel"
	ModeUserspace Mode = "userspace"
)

// ErrUnsupported is returned by [Open] where the kernel path cannot run at all
// (not Linux, no TCX).
var ErrUnsupported = errors.New("fastpath: kernel media path not supported")

// ErrAddress is returned for an entry with an address the kernel path does not
// handle (IPv6, a zero port).
var ErrAddress = errors.New("fastpath: unsupported address")

// Match identifies one direction of a stream as the kernel sees its packets:
// from the latched peer Src to the relay socket Relay. Relay's address may be
// unspecified (a socket bound to the wildcard address): any local address.
type Match struct {
	Src   netip.AddrPort
	Relay netip.AddrPort
}

// Entry is one installed direction: packets matching Match leave from Via
// (the relay socket facing the other leg; an unspecified address keeps the
// address the packet arrived on) to Dst, the other leg's latched peer.
type Entry struct {
	Match
	Via netip.AddrPort
	Dst netip.AddrPort
	// PayloadTypes is the set of RTP payload types forwarded in the kernel;
	// an empty set forwards all. Others go to userspace.
	PayloadTypes []uint8
}

// Counters is what the kernel forwarded for one entry since it was installed.
type Counters struct {
	Packets uint64
	Bytes   uint64 // UDP payload bytes
}

// be32 returns the uint32 whose in-memory bytes are a's, as the BPF program
// keeps addresses (network order). The zero Addr and :: map to 0.
func be32(a netip.Addr) (uint32, error) {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return 0, nil
	}
	if !a.Is4() {
		return 0, fmt.Errorf("%w: %s is not IPv4", ErrAddress, a)
	}
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:]), nil
}

// be16 returns the uint16 whose in-memory bytes are p in network order.
func be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// ptMask is the program's payload-type bitmap; empty means all.
func ptMask(pts []uint8) [2]uint64 {
	if len(pts) == 0 {
		return [2]uint64{^uint64(0), ^uint64(0)}
	}
	var m [2]uint64
	for _, pt := range pts {
		if pt < 128 {
			m[pt>>6] |= 1 << (pt & 63)
		}
	}
	return m
}

func (m Match) check() error {
	if m.Src.Port() == 0 || m.Relay.Port() == 0 {
		return fmt.Errorf("%w: zero port in %s -> %s", ErrAddress, m.Src, m.Relay)
	}
	if !m.Src.Addr().Unmap().Is4() || m.Src.Addr().IsUnspecified() {
		return fmt.Errorf("%w: source %s", ErrAddress, m.Src)
	}
	return nil
}

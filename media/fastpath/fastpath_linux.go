package fastpath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// FastPath is the loaded program and its stream map, attached at TC ingress of
// some interfaces. Safe for concurrent use.
type FastPath struct {
	mu     sync.Mutex
	objs   fpObjects
	links  []link.Link
	ifaces []string
}

// Open loads the program and attaches it at TC ingress (TCX, kernel 6.6 or
// later) of each named interface. Any failure undoes what was done and
// returns the error: the caller keeps the userspace path.
func Open(ifaces []string) (*FastPath, error) {
	if len(ifaces) == 0 {
		return nil, fmt.Errorf("fastpath: no interface to attach to")
	}
	f := &FastPath{ifaces: ifaces}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// need nothing (RemoveMemlock then does nothing). A failure shows in the load.
	_ = rlimit.RemoveMemlock()
	if err := loadFpObjects(&f.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("fastpath: verifier refused the program: %w", err)
		}
		return nil, fmt.Errorf("fastpath: load: %w", err)
	}
	for _, name := range ifaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("fastpath: interface %q: %w", name, err)
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: f.objs.FpIngress, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("fastpath: attach tcx ingress on %s: %w", name, err)
		}
		f.links = append(f.links, l)
	}
	return f, nil
}

// Interfaces returns the interfaces the program is attached to.
func (f *FastPath) Interfaces() []string { return f.ifaces }

func key(m Match) (fpFpKey, error) {
	if err := m.check(); err != nil {
		return fpFpKey{}, err
	}
	s, err := be32(m.Src.Addr())
	if err != nil {
		return fpFpKey{}, err
	}
	d, err := be32(m.Relay.Addr())
	if err != nil {
		return fpFpKey{}, err
	}
	return fpFpKey{Saddr: s, Daddr: d, Sport: be16(m.Src.Port()), Dport: be16(m.Relay.Port())}, nil
}

// Install adds or replaces the entry for e.Match; its counters start at zero.
func (f *FastPath) Install(e Entry) error {
	k, err := key(e.Match)
	if err != nil {
		return err
	}
	if e.Via.Port() == 0 || e.Dst.Port() == 0 || !e.Dst.Addr().Unmap().Is4() || e.Dst.Addr().IsUnspecified() {
		return fmt.Errorf("%w: %s via %s", ErrAddress, e.Dst, e.Via)
	}
	via, err := be32(e.Via.Addr())
	if err != nil {
		return err
	}
	src, oif, err := egress(e.Dst.Addr().Unmap())
	if err != nil {
		return fmt.Errorf("fastpath: install %s -> %s: %w", e.Src, e.Dst, err)
	}
	if via == 0 {
		// A socket on the wildcard address: the source the stack would pick.
		via, _ = be32(src)
	}
	dst, _ := be32(e.Dst.Addr())
	v := fpFpVal{NewSaddr: via, NewDaddr: dst, NewSport: be16(e.Via.Port()), NewDport: be16(e.Dst.Port()),
		Oif: uint32(oif), Pts: ptMask(e.PayloadTypes)}
	if err := f.objs.FpStreams.Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("fastpath: install %s -> %s: %w", e.Src, e.Dst, err)
	}
	return nil
}

// Remove deletes the entry for m and returns its final counters; removing
// an absent entry is not an error (zero counters).
func (f *FastPath) Remove(m Match) (Counters, error) {
	k, err := key(m)
	if err != nil {
		return Counters{}, err
	}
	var v fpFpVal
	if err := f.objs.FpStreams.LookupAndDelete(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Counters{}, nil
		}
		// LookupAndDelete on hash maps needs kernel 5.14; fall back to two calls.
		c, lerr := f.Counters(m)
		if derr := f.objs.FpStreams.Delete(&k); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
			return c, fmt.Errorf("fastpath: remove %s: %w", m.Src, derr)
		}
		return c, lerr
	}
	return Counters{Packets: v.Packets, Bytes: v.Bytes}, nil
}

// Counters returns what the kernel forwarded for m since it was installed.
func (f *FastPath) Counters(m Match) (Counters, error) {
	k, err := key(m)
	if err != nil {
		return Counters{}, err
	}
	var v fpFpVal
	if err := f.objs.FpStreams.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Counters{}, nil
		}
		return Counters{}, fmt.Errorf("fastpath: counters %s: %w", m.Src, err)
	}
	return Counters{Packets: v.Packets, Bytes: v.Bytes}, nil
}

// Entries returns the number of installed entries.
func (f *FastPath) Entries() int {
	var k fpFpKey
	var v fpFpVal
	n := 0
	it := f.objs.FpStreams.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n
}

// Close detaches the program and frees the map. Idempotent.
func (f *FastPath) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	f.links = nil
	errs = append(errs, f.objs.Close())
	f.objs = fpObjects{}
	return errors.Join(errs...)
}

// egress asks the stack how it would send to dst: the source address it
// picks and the interface that holds it, 0 when dst is an address of this
// host (the stack delivers the rewritten packet itself). A connected UDP
// socket does the route lookup; nothing is sent.
func egress(dst netip.Addr) (netip.Addr, int, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("no route to %s: %w", dst, err)
	}
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	_ = c.Close()
	if dst.IsLoopback() {
		return src, 0, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return src, 0, err
	}
	oif := 0
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			switch p.Addr().Unmap() {
			case dst:
				return src, 0, nil // one of ours
			case src:
				if ifi.Flags&net.FlagLoopback == 0 {
					oif = ifi.Index
				}
			}
		}
	}
	if oif == 0 {
		return src, 0, fmt.Errorf("no interface holds %s, the source toward %s", src, dst)
	}
	return src, oif, nil
}

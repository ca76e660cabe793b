package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/portcullis-sbc/portcullis/media/fastpath"
)

// fastPathIfaces are the interfaces relayed media arrives on: the one holding
// bind, or every interface that is up when bind is the wildcard address.
func fastPathIfaces(bind netip.Addr) ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 {
			continue
		}
		if !bind.IsValid() || bind.IsUnspecified() {
			names = append(names, ifi.Name)
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == bind.Unmap() {
				names = append(names, ifi.Name)
			}
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no interface holds %s", bind)
	}
	return names, nil
}

// openFastPath tries the kernel media path and says once which path media
// takes. A refusal is not an error: media stays in userspace.
func openFastPath(want bool, bind netip.Addr, log *slog.Logger) (*fastpath.FastPath, fastpath.Mode) {
	if !want {
		log.Info("media path", "mode", fastpath.ModeUserspace, "reason", "media.fastpath is off")
		return nil, fastpath.ModeUserspace
	}
	ifaces, err := fastPathIfaces(bind)
	var fp *fastpath.FastPath
	if err == nil {
		fp, err = fastpath.Open(ifaces)
	}
	if err != nil {
		reason := "kernel path refused (needs CAP_BPF and CAP_NET_ADMIN, Linux 6.6+ for TCX)"
		level := slog.LevelWarn // refused with the privileges granted: worth a look
		if errors.Is(err, fastpath.ErrUnsupported) {
			reason, level = "kernel path not supported on this system", slog.LevelInfo
		} else if errors.Is(err, os.ErrPermission) {
			// The default (auto) on a node not granted the capabilities: the expected case.
			level = slog.LevelInfo
		}
		log.Log(context.Background(), level, "media path", "mode", fastpath.ModeUserspace, "reason", reason, "err", err)
		return nil, fastpath.ModeUserspace
	}
	log.Info("media path", "mode", fastpath.ModeKernel, "interfaces", ifaces)
	return fp, fastpath.ModeKernel
}

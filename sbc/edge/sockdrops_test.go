//go:build linux

package edge

import (
	"net"
	"testing"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// TestKernelDrops: datagrams the kernel drops from a full receive queue show up in the
// socket's drop count and in portcullis_edge_socket_drops_total.
func TestKernelDrops(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_ = pc.SetReadBuffer(4096) // the kernel's minimum: a few datagrams
	st := &Stats{}
	c := NewPacketConn(pc, nil, Limits{MaxMessageSize: 65535}, st)
	kernelDrops := func() (uint64, bool) {
		d, ok := socketDrops([]*PacketConn{c})[pc.LocalAddr().String()]
		return d, ok
	}
	if d, ok := kernelDrops(); !ok || d != 0 {
		t.Fatalf("fresh socket: drops %d, ok %v", d, ok)
	}
	tx, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	msg := make([]byte, 1000)
	for range 200 {
		tx.Write(msg)
	}
	var d uint64
	testutil.Eventually(t, "kernel drops after 200 datagrams into a 4 KiB queue", func() bool {
		var ok bool
		d, ok = kernelDrops()
		return ok && d > 0
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(st.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "portcullis_edge_socket_drops_total" {
			m := mf.GetMetric()[0]
			if m.GetCounter().GetValue() < float64(d) || m.GetLabel()[0].GetValue() != pc.LocalAddr().String() {
				t.Fatalf("metric %v, drops %d", m, d)
			}
			return
		}
	}
	t.Fatal("portcullis_edge_socket_drops_total not gathered")
}

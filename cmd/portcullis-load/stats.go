// Media statistics: per-second series and a log-linear latency histogram, merged across workers.

package main

import "math/bits"

func bump(perSec []uint64, now int64) []uint64 {
	sec := int(now / 1e9)
	for len(perSec) <= sec {
		perSec = append(perSec, 0)
	}
	perSec[sec]++
	return perSec
}

// hist is a log-linear histogram: exact below 128, then 64 buckets per power of two (<1.6% error).
type hist [128 + 58*64]uint64

func (h *hist) add(v int64) {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 128 {
		h[u]++
		return
	}
	e := bits.Len64(u) - 7
	h[128+(e-1)*64+int(u>>e)-64]++
}

func (h *hist) merge(o *hist) {
	for i := range h {
		h[i] += o[i]
	}
}

// quantile returns the bucket midpoint at quantile q (0..1), or 0 if empty.
func (h *hist) quantile(q float64) int64 {
	var total uint64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total-1)) + 1
	var acc uint64
	for i, c := range h {
		if acc += c; acc >= rank {
			if i < 128 {
				return int64(i)
			}
			e := (i-128)/64 + 1
			sub := uint64((i-128)%64 + 64)
			return int64(sub<<e + (1<<e)/2)
		}
	}
	return 0
}

// mediaStats sums everything the engine measured; call after stop.
type mediaStats struct {
	Sent, Recv, SendErr, SuSent, SuRecv, Dup, Reordered, Misrouted, Garbage uint64
	Skipped, ToolDrops                                                      uint64
	LatP50, LatP99, LatMax                                                  int64 // ns
	PeakSentPPS, PeakRecvPPS                                                uint64
	Flows                                                                   int
}

func (e *engine) stats() mediaStats {
	var st mediaStats
	for i := range e.flows {
		f := e.flows[i].Load()
		if f == nil {
			continue
		}
		st.Flows++
		st.Sent += f.sent
		st.SendErr += f.sendErr
		st.Skipped += f.skipped
		st.SuSent += f.suSent
		st.Recv += f.recv
		st.SuRecv += f.suRecv
		st.Dup += f.dup
		st.Reordered += f.reordered
	}
	var h hist
	var rx, tx []uint64
	for _, r := range e.receivers {
		h.merge(&r.hist)
		st.LatMax = max(st.LatMax, r.latMax)
		st.Misrouted += r.misrouted
		st.Garbage += r.garbage
		rx = addSeries(rx, r.perSec)
	}
	for _, s := range e.senders {
		tx = addSeries(tx, s.perSec)
	}
	st.LatP50, st.LatP99 = h.quantile(0.50), h.quantile(0.99)
	st.ToolDrops = e.toolDrops.Load()
	st.PeakRecvPPS, st.PeakSentPPS = peak(rx), peak(tx)
	return st
}

func addSeries(a, b []uint64) []uint64 {
	for len(a) < len(b) {
		a = append(a, 0)
	}
	for i, v := range b {
		a[i] += v
	}
	return a
}

func peak(a []uint64) uint64 {
	var m uint64
	for _, v := range a {
		m = max(m, v)
	}
	return m
}

package main

import (
	"bufio"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// minProcs is the floor on the Go scheduler's parallelism (GOMAXPROCS) of a serving node.
//
// The media relay's work is almost all kernel time in recvmmsg and sendto, done by whichever
// OS threads hold a Go P. On a small host shared with other busy processes, the kernel's fair
// scheduler shares the CPUs per runnable thread, so a relay with two threads on a two-core
// host gets a smaller share than its neighbours and its packets queue: measured with the
// shared load tool on two cores, 200 audio+video calls, the p99 one-way latency was 2-11x
// rtpengine's, which runs four poller threads there. With four Ps the same run gives p99 at
// 0.8-1.1x rtpengine's and the same CPU per packet. On hosts with four or more CPUs the floor
// changes nothing.
const minProcs = 4

// Collector pacing. Signalling allocates many short-lived objects per call and keeps each
// transaction for 64*T1 (32 s, RFC 3261's Timer J and D), so at high call rates the live heap
// is large (about 250 MB after 12,000 calls at 1,500 calls/s) and every cycle marks all of
// it. The collector's CPU is proportional to the allocation rate over GOGC: at 2,000 calls/s
// on two cores, GOGC=200 left SIPp's mean call setup at 216-497 ms, GOGC=800 at 3-11 ms
// (README, Benchmarks). A high GOGC alone could grow the heap past what the host or the
// container has, so it is used only together with a soft memory limit: near the limit the
// collector runs as often as it must, whatever GOGC says.
const (
	gcPercentLimited   = 800 // with a memory limit
	gcPercentUnlimited = 200 // when no limit could be derived
	// memoryShare is the part of the memory available (the cgroup's limit, else the host's)
	// that the soft limit allows the Go heap; the rest is for stacks, socket buffers that the
	// kernel charges to the cgroup, and the page cache of the Raft log.
	memoryShare = 0.7
)

// tuneRuntime sets the collector and scheduler for a serving node; the GOGC, GOMEMLIMIT and
// GOMAXPROCS environment variables still win.
func tuneRuntime(log *slog.Logger) {
	limit := int64(-1)
	if os.Getenv("GOMEMLIMIT") == "" {
		if avail := memoryAvailable(); avail > 0 {
			limit = int64(float64(avail) * memoryShare)
			debug.SetMemoryLimit(limit)
		}
	} else {
		limit = debug.SetMemoryLimit(-1) // reads the limit GOMEMLIMIT set
	}
	gogc := os.Getenv("GOGC")
	if gogc == "" {
		pct := gcPercentUnlimited
		if limit > 0 && limit < 1<<62 {
			pct = gcPercentLimited
		}
		debug.SetGCPercent(pct)
		gogc = strconv.Itoa(pct)
	}
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
	log.Info("go runtime", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU(),
		"gogc", gogc, "memory_limit_mb", debug.SetMemoryLimit(-1)>>20)
}

// memoryAvailable is the memory this process may use: the cgroup's limit (v2, then v1) when
// one is set and below the host's memory, else the host's total; 0 when neither can be read.
func memoryAvailable() int64 {
	host := meminfoTotal(readSmall("/proc/meminfo"))
	cg := cgroupLimit(readSmall("/sys/fs/cgroup/memory.max"))
	if cg <= 0 {
		cg = cgroupLimit(readSmall("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
	}
	switch {
	case cg > 0 && (host <= 0 || cg < host):
		return cg
	case host > 0:
		return host
	}
	return 0
}

func readSmall(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// cgroupLimit parses a cgroup memory limit file: bytes, or "max" (v2) / a huge value (v1)
// for none; 0 when there is no limit or the text is not one.
func cgroupLimit(s string) int64 {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 { // v1 says "no limit" with a value near 2^63
		return 0
	}
	return n
}

// meminfoTotal returns MemTotal from /proc/meminfo's text in bytes; 0 when absent.
func meminfoTotal(s string) int64 {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || kb <= 0 {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

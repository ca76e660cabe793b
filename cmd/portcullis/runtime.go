package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
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

// tuneRuntime sets the collector and scheduler for a serving node; the GOGC, GOMEMLIMIT and
// GOMAXPROCS environment variables still win.
//
// GOGC=200 trades memory for CPU: signalling allocates many short-lived objects per call, and
// the default GOGC=100 spends a quarter of the CPU in the collector at high call rates.
func tuneRuntime(log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
	log.Info("go runtime", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU())
}

package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// startPprof serves Go's profiler on PORTCULLIS_PPROF (for example 127.0.0.1:6060) when that
// variable is set to a loopback address: an opt-in for performance work, never on by default.
func startPprof(log *slog.Logger) {
	addr := os.Getenv("PORTCULLIS_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Warn("PORTCULLIS_PPROF must be a loopback IP:PORT; profiler not started", "value", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		if err := http.ListenAndServe(addr, mux); err != nil {
			log.Warn("profiler stopped", "error", err)
		}
	}()
	log.Info("profiler listening", "addr", addr)
}

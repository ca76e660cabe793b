//go:build !linux

package main

import "log/slog"

// stopWithGoRun is Linux-only (PR_SET_PDEATHSIG); elsewhere stop a node started by `go run`
// with Ctrl-C in its terminal, or run the built binary.
func stopWithGoRun(*slog.Logger) {}

//go:build !unix

package sinks

import "net"

// peerGone cannot tell on this platform.
func peerGone(net.Conn) bool { return false }

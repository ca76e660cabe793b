//go:build !unix

package cluster

import "net"

// peerGone cannot tell on this platform.
func peerGone(net.Conn) bool { return false }

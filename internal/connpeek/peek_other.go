//go:build !unix

package connpeek

import "net"

// PeerGone cannot tell on this platform.
func PeerGone(net.Conn) bool { return false }

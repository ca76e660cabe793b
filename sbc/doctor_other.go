//go:build !unix

package sbc

// diskSpace is unknown on this platform.
func diskSpace(string) (free, total uint64) { return 0, 0 }

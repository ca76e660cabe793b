package relay

import "sync/atomic"

// What left as UDP GSO messages (send_linux.go): messages sent and the datagrams they carried.
var gsoMessages, gsoDatagrams atomic.Uint64

// GSOStats reports the UDP GSO messages the relay sent and the datagrams they carried (process
// wide): the share of datagrams that crossed the send path as part of a burst to one peer.
func GSOStats() (messages, datagrams uint64) { return gsoMessages.Load(), gsoDatagrams.Load() }

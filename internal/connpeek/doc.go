// Package connpeek tells whether the peer of an idle stream connection has gone, before a
// write is lost into it: the cluster's pooled RPC connections and the sinks' syslog
// connections check it before reuse.
package connpeek

// Package acmecert obtains and renews the TLS certificate of the SIP TLS listeners and the admin
// API from an ACME CA (RFC 8555, golang.org/x/crypto/acme), once for the whole cluster.
//
// The Raft leader runs Manager.Check: it registers an account (kept in the replicated state so a
// new leader reuses it), orders a certificate for the configured domains, publishes each
// challenge in the replicated state so that whichever node the CA reaches answers it (HTTP-01 on
// the challenge listener, TLS-ALPN-01 on every TLS listener of the node), and stores the issued
// certificate and its key in the state. Every node watches the state and hot-swaps the
// certificate its TLS listeners serve (Manager.GetCertificate). A certificate is renewed when
// less than renew_before of its life is left (default: a third of its lifetime).
//
// Keys are in the Raft log and snapshots in data_dir; they are never logged.
package acmecert

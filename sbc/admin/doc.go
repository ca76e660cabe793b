// Package admin is the operators' window on a Portcullis node: the HTTP/JSON API under /api/v1
// (rooms and their credentials, registrations, calls, call records, the guard's lists and bans,
// refusal events with a Server-Sent Events stream, cluster membership, health, tokens and the
// audit trail), its OpenAPI 3 description, Prometheus metrics, /healthz and /readyz, a read-only
// web dashboard embedded in the binary, and the local unix socket through which
// `portcullis token create` mints the first token.
//
// # Security model
//
//   - Every /api/v1 route except openapi.json needs a bearer token. Tokens have a scope: read
//     (every GET) or admin (everything). Only the SHA-256 of a secret is stored (state.Token);
//     a presented secret is hashed and compared in constant time with every stored hash. There is
//     no default token: the first one comes from the unix socket (file mode 0600 in the data dir,
//     peer uid checked on Linux) or from Config.Token (admin.token / PORTCULLIS_ADMIN_TOKEN),
//     which is accepted in memory and never written to the cluster state.
//   - Wrong tokens are limited per source address (IPv6: per /64) and token: after
//     Config.AuthFailureBurst failures of a token from a source, that token gets 429 from there
//     until the bucket refills at one failure per Config.AuthFailureEvery. A flood of wrong
//     tokens from a shared address (NAT, jump host) so never locks out a valid token used from
//     it; guessing is no threat to minted tokens (256 random bits), give admin.token as much.
//     Each source's failures are logged at most once per AuthFailureEvery, whatever the
//     tokens, never with the secret. A missing token is a plain 401 (it
//     guesses nothing); read tokens attempting a write get 403 and a log line.
//   - On a loopback listener (the default) the Host header must name a loopback address,
//     "localhost" or one of Config.AllowedHosts, and an Origin header must name one of those too:
//     a web page whose DNS name was rebound to 127.0.0.1 cannot reach the API.
//   - Every successful write appends a state.AuditEntry (who, what, target, when, node).
//   - /metrics needs no token from a loopback peer (Prometheus on the same host or a sidecar) or
//     when Config.MetricsPublic is set; from anywhere else it needs a read token (Prometheus:
//     authorization: {credentials: …}). /healthz, /readyz, /api/v1/openapi.json and the
//     dashboard's static files are public; the dashboard reads the API with the token the
//     operator logs in with (kept in sessionStorage only).
//
// # Consistency
//
// Reads come from the node's local copy of the state; add ?consistent=true to any GET to wait
// first until this node has applied every write acknowledged cluster-wide (503 no_leader when
// that cannot be proven). A write returns after it is applied, and then waits the same way, so a
// client reads its own writes from the same node.
//
// # Errors
//
// Every failure is JSON {"error": code, "message": text} (plus "field" when one input field is
// at fault) with the matching HTTP status; see APIError and the codes in errors.go.
package admin

// Package registrar is the registrar for room systems: digest authentication of REGISTER
// (through sbc/digest), bindings written through the cluster store, and the flow each binding
// registered on (source, transport, local address, node) so requests go back over it.
//
// The node wires it as:
//
//	reg, _ := registrar.New(cfg, store, auth, client, guard)
//	srv.OnRegister(reg.HandleRegister)
//	go reg.Run(ctx)                        // expiry sweep and UDP keepalives
//	reg.FlowClosed("TCP", remote)          // from the wrapped TCP/TLS listener on close
//	dst, tr := registrar.Route(binding)    // req.SetDestination(dst); req.SetTransport(tr)
//
// Decisions: a bad response answers 403 (known and unknown users alike, same headers); a
// missing/stale credential answers 401 with one challenge per configured algorithm (the node
// offers MD5 alone by default). A configured room whose registration fails (wrong password,
// unsupported algorithm, no credentials within Config.ChallengeTimeout of its 401) is reported
// to Config.OnFailure. Bindings are written with store.Propose, so a 200 means the binding is
// committed cluster-wide.
package registrar

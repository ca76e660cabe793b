// Package sbc is the signalling node of Portcullis: it owns the SIP user agent (one sipgo UA with a
// server and a client on top), the listeners behind the edge filters, and ties together the guard,
// the registrar, the B2BUA, the media relay, the cluster store and the admin API.
//
// Flows (see ARCHITECTURE.md):
//
//	INVITE:   edge (banned source? drop before parsing) → guard.CheckRequest → b2bua (guard
//	          inbound policy, media session, registrar lookup of the room's flow) → outbound leg
//	REGISTER: edge → guard.CheckRequest → registrar (digest, binding via the cluster) → 200
//	OPTIONS:  edge → guard.CheckRequest → 200 with Allow
package sbc

package sbc

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// supportedOptions are the option tags the node implements (RFC 3261 section 8.2.2.3): reliable
// provisionals and session timers in calls, Path and SIP outbound in registrations.
var supportedOptions = []string{"100rel", "timer", "path", "outbound"}

// checkRequest applies the request checks sipgo leaves to the application and reports whether
// the request is refused, with the answer to send (nil for an ACK, which is never answered): more than one Content-Length (RFC 4475 mcl01: nobody can tell where
// the body ends) or a CSeq method that is not the request's (mismatch01) get 400; an
// out-of-dialog request other than ACK and CANCEL that requires an option tag we do not
// implement gets 420 Bad Extension with Unsupported listing them (bext01).
func checkRequest(req *sip.Request) (*sip.Response, bool) {
	bad := func(reason string) (*sip.Response, bool) {
		if req.IsAck() {
			return nil, true
		}
		return sip.NewResponseFromRequest(req, 400, reason, nil), true
	}
	if len(req.GetHeaders("Content-Length")) > 1 {
		return bad("Multiple Content-Length")
	}
	if cs := req.CSeq(); cs != nil && cs.MethodName != req.Method {
		return bad("CSeq Method Mismatch")
	}
	if req.IsAck() || req.IsCancel() {
		return nil, false
	}
	if to := req.To(); to != nil && to.Params.Has("tag") {
		return nil, false
	}
	var unsupported []string
	for _, h := range req.GetHeaders("Require") {
		for _, tok := range strings.Split(h.Value(), ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" || supportedOption(tok) {
				continue
			}
			unsupported = append(unsupported, tok)
		}
	}
	if len(unsupported) == 0 {
		return nil, false
	}
	res := sip.NewResponseFromRequest(req, 420, "Bad Extension", nil)
	res.AppendHeader(sip.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
	return res, true
}

func supportedOption(tok string) bool {
	for _, s := range supportedOptions {
		if strings.EqualFold(s, tok) {
			return true
		}
	}
	return false
}

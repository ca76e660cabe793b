package b2bua

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// passHeaders are the headers relayed from one leg to the other (besides those the engine writes
// itself: Via, From, To, Call-ID, CSeq, Contact, Route, Record-Route, Max-Forwards, Supported,
// Require, Allow, Session-Expires, Min-SE, RSeq, RAck, Content-Length). Everything else —
// P-Asserted-Identity and other trust headers, Remote-Party-ID, Diversion, History-Info,
// X- headers of the far side's equipment — stays on its side.
var passHeaders = []string{
	"Content-Type", "Content-Disposition", "Content-Language", "Accept", "Accept-Language",
	"Subject", "Info-Package", "Recv-Info", "Call-Info", "Alert-Info", "Reason", "Event",
	"Answer-Mode", "Priv-Answer-Mode", "P-Auto-Answer", // removed when the room blocks auto-answer
}

// autoAnswer reports whether a header asks the callee to answer by itself (intercom, paging,
// SIP auto-answer): Call-Info with answer-after, auto-answer or intercom; Alert-Info with
// auto-answer or intercom semantics; Answer-Mode / Priv-Answer-Mode other than Manual
// (RFC 5373); P-Auto-Answer. (The same rules as guard.IsAutoAnswer.)
func autoAnswer(name, value string) bool {
	v := strings.ToLower(value)
	switch strings.ToLower(name) {
	case "call-info":
		return strings.Contains(v, "answer-after") || strings.Contains(v, "auto-answer") ||
			strings.Contains(v, "autoanswer") || strings.Contains(v, "intercom")
	case "alert-info":
		return strings.Contains(v, "auto") || strings.Contains(v, "intercom") || strings.Contains(v, "answer")
	case "answer-mode", "priv-answer-mode":
		return !strings.HasPrefix(strings.TrimSpace(v), "manual")
	case "p-auto-answer":
		return true
	}
	return false
}

// message is what requests and responses share.
type message interface {
	GetHeaders(name string) []sip.Header
	GetHeader(name string) sip.Header
	AppendHeader(h sip.Header)
	Body() []byte
	ContentType() *sip.ContentTypeHeader
}

// copyHeaders copies the relayable headers of src onto dst. With stripAutoAnswer, auto-answer
// requests are left out; with userAgent, User-Agent and Server are relayed as well. A
// Content-Type already on dst is kept (Content-Type is single-valued, RFC 3261 §20.15).
func copyHeaders(src, dst message, stripAutoAnswer, userAgent bool) {
	for _, name := range passHeaders {
		for _, h := range src.GetHeaders(name) {
			if stripAutoAnswer && autoAnswer(h.Name(), h.Value()) {
				continue
			}
			if name == "Content-Type" && (src.Body() == nil || dst.GetHeader("Content-Type") != nil) {
				continue // no body to type, or dst has its own (the relayed SDP is ours): once only
			}
			dst.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
	if userAgent {
		for _, name := range []string{"User-Agent", "Server"} {
			if h := src.GetHeader(name); h != nil {
				dst.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
			}
		}
	}
}

// hasOption reports whether a Supported/Require style header lists tok.
func hasOption(m message, header, tok string) bool {
	for _, h := range m.GetHeaders(header) {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// hasSDP reports whether a message carries an SDP body.
func hasSDP(m message) bool {
	if len(m.Body()) == 0 {
		return false
	}
	ct := m.ContentType()
	return ct == nil || strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct.Value())), "application/sdp")
}

func headerValue(m message, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

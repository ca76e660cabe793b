package b2bua

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/sbc/guard"
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

// message is what requests and responses share.
type message interface {
	GetHeaders(name string) []sip.Header
	GetHeader(name string) sip.Header
	AppendHeader(h sip.Header)
	Body() []byte
	ContentType() *sip.ContentTypeHeader
}

// copyHeaders copies the relayable headers of src onto dst. A header whose value is not safe to
// write (safeValue: a CR or LF would start a header of the sender's choosing on the other leg)
// is left out; with stripAutoAnswer, auto-answer requests are left out too (decided on the
// validated value, by the guard's rule: guard.IsAutoAnswer); with userAgent, User-Agent and Server are relayed as well.
// A Content-Type already on dst is kept (Content-Type is single-valued, RFC 3261 §20.15).
func copyHeaders(src, dst message, stripAutoAnswer, userAgent bool) {
	for _, name := range passHeaders {
		for _, h := range src.GetHeaders(name) {
			if !safeValue(h.Value()) {
				continue
			}
			if stripAutoAnswer && guard.IsAutoAnswer(h.Name(), h.Value()) {
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
			for _, h := range src.GetHeaders(name) {
				if safeValue(h.Value()) {
					dst.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
					break
				}
			}
		}
	}
}

// safeValue reports whether a header value may be written on the other leg as it is: no control
// character but HTAB (RFC 3261 allows none in a value once folding is undone; sipgo splits lines
// on CRLF only, so a bare LF or CR stays in the value and would end the line on the wire for
// any peer that accepts bare line ends), and no DEL.
func safeValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// displayName returns a display name that is safe to write into a From/To header: a name with
// a control character is dropped (the URI alone identifies the party). sipgo keeps a quoted
// name as it was quoted (escapes included) and writes it back inside quotes, so quotes and
// backslashes round-trip; only a line end could break out of the header.
func displayName(s string) string {
	if !safeValue(s) {
		return ""
	}
	return s
}

// unsafeNeeded names a part of a dialog-creating request that the other leg needs and whose
// value is not safe to write there: the From and Request-URI user and host (leg B's From and
// target are made of them) and Content-Type when there is a body (dropping it would change what
// the body means); "" when there is none. Such a request is refused with 400.
func unsafeNeeded(req *sip.Request) string {
	if f := req.From(); f != nil && !(safeValue(f.Address.User) && safeValue(f.Address.Host)) {
		return "From"
	}
	if !(safeValue(req.Recipient.User) && safeValue(req.Recipient.Host)) {
		return "Request-URI"
	}
	if len(req.Body()) == 0 {
		return ""
	}
	for _, h := range req.GetHeaders("Content-Type") {
		if !safeValue(h.Value()) {
			return "Content-Type"
		}
	}
	return ""
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

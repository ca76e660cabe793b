package guard

import "strings"

// autoAnswerHeaders are the headers by which a caller can ask a phone or room system to answer
// by itself: Call-Info with answer-after (Cisco, Snom, Yealink, Grandstream, Fanvil, Linphone),
// Alert-Info with auto-answer, ring-answer or intercom semantics (Polycom, Yealink, Aastra,
// Panasonic), Answer-Mode and Priv-Answer-Mode (RFC 5373) and P-Auto-Answer.
var autoAnswerHeaders = []string{"Call-Info", "Alert-Info", "Answer-Mode", "Priv-Answer-Mode", "P-Auto-Answer"}

// AutoAnswerHeaders returns the names of the headers that can carry an auto-answer request.
// Only the values IsAutoAnswer accepts need to go: a Call-Info with a picture stays.
func AutoAnswerHeaders() []string { return append([]string(nil), autoAnswerHeaders...) }

// IsAutoAnswer reports whether a header asks the callee to answer without a person (intercom,
// paging, auto-answer). name is matched case-insensitively. It does not allocate.
func IsAutoAnswer(name, value string) bool {
	switch {
	case strings.EqualFold(name, "Call-Info"):
		return containsFold(value, "answer-after") || containsFold(value, "auto-answer") ||
			containsFold(value, "autoanswer") || containsFold(value, "intercom")
	case strings.EqualFold(name, "Alert-Info"):
		return containsFold(value, "auto") || containsFold(value, "intercom") || containsFold(value, "answer")
	case strings.EqualFold(name, "Answer-Mode"), strings.EqualFold(name, "Priv-Answer-Mode"):
		// RFC 5373: Manual or Auto, with an optional ;require. Only Manual is harmless.
		v := strings.TrimSpace(value)
		return !(len(v) >= 6 && strings.EqualFold(v[:6], "manual"))
	case strings.EqualFold(name, "P-Auto-Answer"):
		return true
	}
	return false
}

// containsFold reports whether s contains the lowercase ASCII string sub, ignoring ASCII case.
func containsFold(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for j < n && lower(s[i+j]) == sub[j] {
			j++
		}
		if j == n {
			return true
		}
	}
	return false
}

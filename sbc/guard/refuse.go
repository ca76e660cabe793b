// Refusals: the one place a refusal becomes an event, a count and a rate-limited log line.

package guard

import (
	"net/netip"
	"time"
)

// refuseScan refuses by a scan, ghost, flood or source rule: dropped in stealth mode, else
// answered with code.
func (g *Guard) refuseScan(r *Request, rule ruleID, code int, reason string, now time.Time) Verdict {
	if g.cfg.Stealth {
		return g.refuse(r, "", rule, Drop, 0, reason, now)
	}
	return g.refuse(r, "", rule, Reject, code, reason, now)
}

// maxEventField bounds strings copied from the network into the event ring.
const maxEventField = 256

func clip(s string) string {
	if len(s) > maxEventField {
		return s[:maxEventField]
	}
	return s
}

// refuse records one refusal (event, count, rate-limited log) and returns its verdict.
func (g *Guard) refuse(r *Request, room string, rule ruleID, action Action, code int, reason string, now time.Time) Verdict {
	if action == Drop {
		code = 0
	}
	v := Verdict{Action: action, Code: code, Rule: rule.String(), Reason: reason}
	src := r.Source.Addr().Unmap().WithZone("")
	g.events.add(Event{
		Time: now, Source: r.Source.String(), Transport: r.Transport, Method: clip(r.Method),
		From: clip(uri(r.FromUser, r.FromHost)), To: clip(uri(r.ToUser, r.ToHost)),
		UserAgent: clip(r.UserAgent), Room: room, Rule: v.Rule, Action: action, Code: code, Reason: reason,
	}, src, rule)
	g.logRefusal(src, rule, now, func() []any {
		return []any{"rule", v.Rule, "action", action, "code", code, "source", r.Source, "transport", r.Transport,
			"method", clip(r.Method), "from", clip(uri(r.FromUser, r.FromHost)), "to", clip(uri(r.ToUser, r.ToHost)),
			"user_agent", clip(r.UserAgent), "room", room, "reason", reason}
	})
	return v
}

// logRefusal logs the first refusal per source and rule per minute.
func (g *Guard) logRefusal(src netip.Addr, rule ruleID, now time.Time, attrs func() []any) {
	ok, suppressed := g.logs.allow(sourceKey(src), rule, now.UnixNano())
	if !ok {
		return
	}
	a := attrs()
	if suppressed > 0 {
		a = append(a, "suppressed_last_minute", suppressed)
	}
	g.log.Info("guard refused request", a...)
}

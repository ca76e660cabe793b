package b2bua

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// sessionExpires reads a Session-Expires header (RFC 4028), in either its long or compact
// ("x") form.
func sessionExpires(m message) (time.Duration, bool) {
	v := headerValue(m, "Session-Expires")
	if v == "" {
		v = headerValue(m, "x")
	}
	if v == "" {
		return 0, false
	}
	num, _, _ := strings.Cut(v, ";")
	// delta-seconds are 32-bit (RFC 3261 section 25.1); a larger value means "as long as
	// possible", not an overflowing (negative) duration.
	n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 32)
	if errors.Is(err, strconv.ErrRange) {
		n, err = math.MaxUint32, nil
	}
	if err != nil || n == 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// armTimers starts the answered call's clocks: the maximum duration, and the session refresh
// on both legs (we are the refresher on both: a refresh that gets no answer, 408 or 481 means
// that side is gone and the call is torn down).
func (c *call) armTimers() {
	e := c.e
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.cfg.MaxDuration > 0 {
		// from the answer: an adopted call keeps the time it had (adopt.go)
		left := max(e.cfg.MaxDuration-time.Since(c.answered), 0)
		c.timers = append(c.timers, time.AfterFunc(left, func() {
			c.hangup("maximum call duration reached", 0)
		}))
	}
	if se := e.cfg.SessionExpires; se > 0 {
		for _, d := range []*dialog{c.a, c.b} {
			c.timers = append(c.timers, c.refreshTimer(d, se/2))
		}
	}
}

func (c *call) refreshTimer(d *dialog, every time.Duration) *time.Timer {
	var t *time.Timer
	t = time.AfterFunc(every, func() {
		if c.refresh(d) {
			c.mu.Lock()
			if !c.ended {
				t.Reset(every)
			}
			c.mu.Unlock()
		}
	})
	return t
}

// refresh sends a session refresh on leg d: UPDATE without SDP when the peer allows it, else a
// re-INVITE with the same SDP as last time (no change to the session). It returns false when
// the call was ended because the peer is gone.
func (c *call) refresh(d *dialog) bool {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return false
	}
	if c.pending {
		c.mu.Unlock()
		return true // an exchange in progress refreshes the session anyway
	}
	c.pending = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.pending = false
		c.mu.Unlock()
	}()
	se := strconv.Itoa(int(c.e.cfg.SessionExpires / time.Second))
	d.mu.Lock()
	update := d.update
	d.mu.Unlock()
	method := sip.INVITE
	if update {
		method = sip.UPDATE
	}
	req := d.newRequest(method, 0, sip.ContactHeader{Address: c.e.cfg.Contact(d.transport)})
	req.AppendHeader(sip.NewHeader("Session-Expires", se+";refresher=uac"))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	if method == sip.INVITE {
		if b := d.sdp(); len(b) > 0 {
			req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			req.SetBody(b)
		}
	}
	// the refresh must be answered well before the session would expire on the other side
	res, tx, err := c.transactWithin(req, min(32*time.Second, c.e.cfg.SessionExpires/2))
	if tx != nil {
		defer tx.Terminate()
	}
	switch {
	case err != nil || res == nil || res.StatusCode == 408 || res.StatusCode == 481:
		c.hangup("session timer: "+legName(d.side)+" does not answer refreshes", 0)
		return false
	case res.IsSuccess() && method == sip.INVITE:
		ack := d.newRequest(sip.ACK, req.CSeq().SeqNo, sip.ContactHeader{})
		_ = c.e.deps.Client.WriteRequest(ack)
	case method == sip.UPDATE && (res.StatusCode == 405 || res.StatusCode == 501):
		d.mu.Lock()
		d.update = false
		d.mu.Unlock()
	}
	return true
}

package main

// The SIP run: the callee registers, the caller places the calls, the figures are collected.

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// runCalls is the SIP run: register the callee, place the calls, collect the figures.
func runCalls(cfg config, kinds []*streamKind) (*report, error) {
	wall := time.Now()
	cpu0, drops0 := cpuSeconds(), udpDrops()
	rep := &report{Calls: cfg.calls}

	eng, err := newEngine(cfg.calls*2*len(kinds)+256, cfg.workers, kinds, cfg.rtpPort, cfg.gso)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ce, cr, closeSides, err := newSides(ctx, cfg, kinds, eng)
	if err != nil {
		return nil, err
	}
	defer closeSides()

	granted, err := ce.register(ctx, 3600)
	if err != nil {
		rep.Failed, rep.Error = cfg.calls, err.Error()
		return rep, err
	}
	slog.Info("registered", "aor", cfg.aor, "expires", granted)
	regCtx, regStop := context.WithCancel(ctx)
	regDone := make(chan struct{})
	go func() {
		ce.keepRegistered(regCtx, granted)
		close(regDone)
	}()
	go progress(regCtx, cr)
	results := placeCalls(ctx, cfg, cr)
	regStop()
	<-regDone
	cancel() // releases callee calls whose BYE never arrived
	ce.finish()
	uctx, ucancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := ce.register(uctx, 0); err != nil {
		slog.Warn("un-REGISTER failed", "err", err)
	}
	ucancel()
	eng.stop()

	tally(rep, results)
	fillMedia(rep, eng.stats())
	rep.CalleeInvites, rep.CalleeNoAck, rep.CalleeRejected = ce.invites.Load(), ce.noAck.Load(), ce.rejected.Load()
	rep.HostUDPDrops = udpDrops() - drops0
	el := time.Since(wall).Seconds()
	rep.WallS = round3(el)
	rep.ToolCPUPct = round3((cpuSeconds() - cpu0) / el * 100)
	return rep, nil
}

// newSides starts the two SIP user agents of a run: the callee (the room system, on
// cfg.calleeAddr) and the caller; closeSides closes both.
func newSides(ctx context.Context, cfg config, kinds []*streamKind, eng *engine) (ce *callee, cr *caller, closeSides func(), err error) {
	room, err := newSipSide("callload-room", cfg.aor, cfg.calleeAddr)
	if err != nil {
		return nil, nil, nil, err
	}
	ce = &callee{sipSide: room, eng: eng, ports: newPortRange(eng, calleeNet), hold: cfg.hold, edge: cfg.edge,
		aor: cfg.aor, user: cfg.user, pass: cfg.pass, ctx: ctx, kinds: map[string]*streamKind{}}
	for _, k := range kinds {
		ce.kinds[k.media] = k
	}
	ce.start()

	callerSide, err := newSipSide("callload", "caller", cfg.callerAddr)
	if err != nil {
		room.close()
		return nil, nil, nil, err
	}
	cr = &caller{sipSide: callerSide, eng: eng, ports: newPortRange(eng, callerNet), kinds: kinds, hold: cfg.hold,
		edge: cfg.edge, aor: cfg.aor, user: cfg.user, pass: cfg.pass}
	cr.start()
	return ce, cr, func() { callerSide.close(); room.close() }, nil
}

// placeCalls places cfg.calls calls at cfg.rate per second and waits for them all.
func placeCalls(ctx context.Context, cfg config, cr *caller) []callResult {
	results := make([]callResult, cfg.calls)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.calls {
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) / cfg.rate * float64(time.Second)))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = cr.call(ctx)
		}()
	}
	wg.Wait()
	return results
}

// tally counts the calls' outcomes and call setup times into rep.
func tally(rep *report, results []callResult) {
	var setups []float64
	rep.FailReasons = map[string]int{}
	for _, r := range results {
		if !r.ok {
			rep.Failed++
			rep.FailReasons[r.reason]++
			continue
		}
		rep.OK++
		setups = append(setups, float64(r.setup.Microseconds())/1000)
		if r.byeFailed {
			rep.ByeFailed++
		}
		if r.remoteBye {
			rep.RemoteBye++
		}
	}
	slices.Sort(setups)
	rep.SetupP50, rep.SetupP99 = round3(pctl(setups, 0.50)), round3(pctl(setups, 0.99))
	if len(setups) > 0 {
		rep.SetupMax = round3(setups[len(setups)-1])
	}
}

func fillMedia(rep *report, st mediaStats) {
	rep.RTPSent, rep.RTPRecv = st.Sent, st.Recv
	rep.LossPct = lossPct(st.Sent, st.Recv)
	rep.SteadyLossPct = lossPct(st.Sent-st.SuSent, st.Recv-st.SuRecv)
	rep.StartupLossPct = lossPct(st.SuSent, st.SuRecv)
	rep.LatP50, rep.LatP99, rep.LatMax = us(st.LatP50), us(st.LatP99), us(st.LatMax)
	rep.PPSRelayed, rep.PPSSentPeak = st.PeakRecvPPS, st.PeakSentPPS
	rep.Reordered, rep.Duplicates, rep.Misrouted, rep.Garbage, rep.SendErrors = st.Reordered, st.Dup, st.Misrouted, st.Garbage, st.SendErr
	rep.SendSkipped, rep.ToolRxDrops = st.Skipped, st.ToolDrops
	// The tool could not keep its own schedule or read fast enough: figures include its limits.
	rep.ToolLimited = st.Skipped > 0 || st.ToolDrops > 0 || st.SendErr > 0
}

func progress(ctx context.Context, cr *caller) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			slog.Info("progress", "active", cr.active.Load(), "answered", cr.answered.Load(), "failed", cr.failed.Load())
		}
	}
}

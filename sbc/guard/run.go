package guard

import (
	"context"
	"sync"
	"time"
)

// Run does the guard's background work until ctx is done, then returns nil: it loads each
// threat feed at once and every Feed.Interval, rebuilds the ban set when the cluster's bans
// change or one expires, and prunes per-source state idle for IdleTimeout and old strikes.
// The guard decides without Run, but then has no feeds and keeps idle sources.
func (g *Guard) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer g.running.Store(false)
	var wg sync.WaitGroup
	for i, f := range g.cfg.Feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.runFeed(ctx, i, f)
		}()
	}
	defer wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	every := max(g.cfg.IdleTimeout/2, time.Second)
	prune := time.NewTicker(every)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			now := g.cfg.Now().UnixNano()
			if bs := g.bans.Load(); g.bansDirty.Load() || (bs.next != 0 && now >= bs.next) {
				g.refreshBans(now)
			}
			if g.roomsBuilt.Load() != g.roomsChanged.Load() {
				g.rebuildRooms()
			}
		case <-prune.C:
			g.prune(g.cfg.Now())
		}
	}
}

// prune drops idle per-source state and forgotten strikes.
func (g *Guard) prune(now time.Time) {
	n := g.table.prune(now.UnixNano(), int64(g.cfg.IdleTimeout))
	g.pruneStrikes(now)
	g.sites.prune(now)
	g.pruneRoomLocks(now)
	g.log.Debug("guard: pruned idle sources", "sources", n)
}

// Stats are the guard's sizes, for diagnostics.
type Stats struct {
	Sources       int    // per-source entries held
	FeedPrefixes  int    // prefixes in the union of feeds
	Bans          int    // prefixes this node remembers having banned
	DroppedEvents uint64 // events slow subscribers missed
}

// Stats returns the guard's sizes.
func (g *Guard) Stats() Stats {
	g.banMu.Lock()
	bans := len(g.strikes)
	g.banMu.Unlock()
	return Stats{
		Sources:       g.table.len(),
		FeedPrefixes:  len(g.feeds.Load().Prefixes()),
		Bans:          bans,
		DroppedEvents: g.events.dropped.Load(),
	}
}

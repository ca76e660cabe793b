package guard

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// TestRoomsAppliedWhileGuardStarts: a node that joins a cluster creates its guard while it is
// still applying the cluster log. A room applied after the guard read the rooms but before it
// started following the state was never seen: the node refused calls for it as "no room" for
// good (the container cluster test in CI: "boardroom is no room" on a node where the same room
// had just authenticated a REGISTER). The guard follows the state before it reads it now.
func TestRoomsAppliedWhileGuardStarts(t *testing.T) {
	const tries, rooms = 200, 20
	for try := range tries {
		st := state.NewLocal()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rooms {
				if err := st.Propose(context.Background(), state.PutRoom(state.Room{Name: fmt.Sprintf("room%d", i)})); err != nil {
					t.Error(err)
				}
			}
		}()
		g, err := New(Config{Domain: testDomain, Logger: slog.New(slog.DiscardHandler)}, st)
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i := range rooms {
			if name := fmt.Sprintf("room%d", i); !g.isRoom(name) {
				t.Fatalf("try %d: %s is in the state but the guard does not know it", try, name)
			}
		}
		g.Close()
	}
}

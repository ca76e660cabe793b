package state

import (
	"fmt"
	"slices"
)

// Cluster log formats. The leader learns which log formats each member applies from its pings
// (cluster/batch.go) and records here what all members apply, with the members it asked: so a
// node that becomes leader, or restarts, knows at once what it may write for them (state.CmdOnce
// envelopes above all: unwrapping a retried one would apply it twice) rather than after its
// own first round of pings, which a dead member never answers.

// CmdClusterFormats records the log formats every member applies. Never renumber. It is
// ignorable: an older node skips it (it never writes what it does not apply).
const CmdClusterFormats CmdType = Ignorable | 49

func init() {
	if old, ok := cmdNames[CmdClusterFormats]; ok { // two branches took the same number
		panic(fmt.Sprintf("state: command type %d is both %s and cluster-formats", uint8(CmdClusterFormats), old))
	}
	cmdNames[CmdClusterFormats] = "cluster-formats"
}

// Formats is what every member of the cluster applies.
type Formats struct {
	Formats int      `json:"formats"`
	Members []string `json:"members"` // the member IDs, sorted
}

// SetClusterFormats records that every one of members applies log formats f.
func SetClusterFormats(f int, members []string) Command {
	m := slices.Clone(members)
	slices.Sort(m)
	return newCommand(CmdClusterFormats, Formats{Formats: f, Members: m})
}

// applyClusterFormats applies CmdClusterFormats. Callers hold mu.
func (s *State) applyClusterFormats(c Command) error {
	f, err := decode[Formats](c)
	if err != nil {
		return err
	}
	s.formats = &f
	return nil
}

// ClusterFormats returns the log formats every member applies, as the last leader that asked
// them all recorded, and those members (sorted); 0 and nil when none was recorded.
func (s *State) ClusterFormats() (int, []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.formats == nil {
		return 0, nil
	}
	return s.formats.Formats, s.formats.Members
}

package cluster

import (
	"errors"
	"fmt"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Errors of the cluster package. Errors returned by Node methods wrap them (check with errors.Is).
var (
	// ErrNoLeader: no leader is known or reachable within the deadline. On a node cut off with a
	// minority of the voters this is what every write returns until the partition heals.
	ErrNoLeader = errors.New("cluster: no leader (minority partition?)")
	// ErrNotLeader: the operation needs the leader and this node is not (used between nodes).
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrOutcomeUnknown: the write was handed to Raft but leadership was lost or the deadline
	// passed before it committed; it may or may not be applied.
	ErrOutcomeUnknown = errors.New("cluster: write outcome unknown (leadership lost or timed out)")
	// ErrClosed: the node is shut down.
	ErrClosed = errors.New("cluster: node closed")
	// ErrHalted: the node met a command it cannot apply (state.Fatal) and stopped rather than
	// diverge. Upgrade the binary and restart it.
	ErrHalted = errors.New("cluster: node halted: cannot apply the replicated log")
	// ErrConfig: the configuration is invalid.
	ErrConfig = errors.New("cluster: invalid config")
	// ErrBadToken: a join token is malformed, unknown or expired.
	ErrBadToken = errors.New("cluster: bad join token")
	// ErrJoin: joining the cluster failed.
	ErrJoin = errors.New("cluster: join failed")
	// ErrTLS: cluster certificates are missing or invalid.
	ErrTLS = errors.New("cluster: tls")
	// ErrExists: Init found cluster certificates already in the data dir.
	ErrExists = errors.New("cluster: already initialised")
	// ErrUnknownMember: no member has this ID.
	ErrUnknownMember = errors.New("cluster: unknown member")
	// ErrQueueFull: Enqueue dropped a command because its queue was full.
	ErrQueueFull = errors.New("cluster: enqueue queue full")
)

// wireErrors are the sentinels that keep their identity across the internal RPC.
var wireErrors = []struct {
	code string
	err  error
}{
	{"halted", ErrHalted}, {"not_leader", ErrNotLeader}, {"no_leader", ErrNoLeader},
	{"outcome_unknown", ErrOutcomeUnknown}, {"closed", ErrClosed}, {"bad_token", ErrBadToken},
	{"join", ErrJoin}, {"tls", ErrTLS}, {"unknown_member", ErrUnknownMember},
	{"unknown_command", state.ErrUnknownCommand}, {"newer_version", state.ErrNewerVersion},
	{"not_found", state.ErrNotFound}, {"bad_payload", state.ErrBadPayload},
	{"short_command", state.ErrShortCommand},
}

// rpcError is an error on the wire: its message and the codes of the sentinels it wraps.
type rpcError struct {
	Codes []string `json:"codes,omitempty"`
	Msg   string   `json:"msg"`
}

func wireError(err error) *rpcError {
	if err == nil {
		return nil
	}
	e := &rpcError{Msg: err.Error()}
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			e.Codes = append(e.Codes, w.code)
		}
	}
	return e
}

// err turns a wire error back into an error that errors.Is matches against the same sentinels.
func (e *rpcError) err() error {
	if e == nil {
		return nil
	}
	re := &remoteError{msg: e.Msg}
	for _, c := range e.Codes {
		for _, w := range wireErrors {
			if w.code == c {
				re.wrapped = append(re.wrapped, w.err)
			}
		}
	}
	return re
}

// remoteError is an error returned by another node.
type remoteError struct {
	msg     string
	wrapped []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.wrapped }

func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

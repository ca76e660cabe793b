package state

import (
	"encoding/binary"
	"fmt"
)

// CmdBatch is a Raft log entry that carries several encoded commands, applied in order as if
// each were its own entry (group commit: one entry and one fsync for many writes). It is not
// Ignorable: a node that cannot apply it must stop. Never put a batch inside a batch.
const CmdBatch CmdType = 17

// batchVersion is the layout EncodeBatch writes: a uvarint count, then each command as a uvarint
// length and the bytes of Command.Encode.
const batchVersion = 1

// MaxBatch bounds the commands one batch entry may carry (DecodeBatch refuses more).
const MaxBatch = 4096

func init() { cmdNames[CmdBatch] = "batch" }

// EncodeBatch returns the wire form of a batch entry holding the encoded commands cmds.
func EncodeBatch(cmds [][]byte) []byte {
	size := 2 + binary.MaxVarintLen32
	for _, c := range cmds {
		size += binary.MaxVarintLen32 + len(c)
	}
	b := make([]byte, 0, size)
	b = append(b, byte(CmdBatch), batchVersion)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// DecodeBatch splits the payload of a CmdBatch command (version v) into its encoded commands;
// the slices alias payload. It refuses a newer layout, a truncated or oversized payload,
// trailing bytes and nested batches.
func DecodeBatch(v uint8, payload []byte) ([][]byte, error) {
	if v > batchVersion {
		return nil, fmt.Errorf("%w: batch v%d", ErrNewerVersion, v)
	}
	n, k := binary.Uvarint(payload)
	if k <= 0 || n > MaxBatch {
		return nil, fmt.Errorf("%w: batch: bad count", ErrBadPayload)
	}
	p := payload[k:]
	out := make([][]byte, 0, n)
	for i := range n {
		l, k := binary.Uvarint(p)
		if k <= 0 || l > uint64(len(p)-k) {
			return nil, fmt.Errorf("%w: batch: command %d truncated", ErrBadPayload, i)
		}
		c := p[k : k+int(l)]
		if len(c) > 0 && CmdType(c[0]) == CmdBatch {
			return nil, fmt.Errorf("%w: batch: nested batch at %d", ErrBadPayload, i)
		}
		out = append(out, c)
		p = p[k+int(l):]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: batch: %d trailing bytes", ErrBadPayload, len(p))
	}
	return out, nil
}

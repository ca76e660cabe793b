package state

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// CmdType is the first byte of an encoded command. Types with the Ignorable bit set may be skipped
// by a node that does not know them (an older binary during a rolling upgrade); any other unknown
// type stops the node rather than let its state diverge.
type CmdType uint8

// Ignorable marks a command type that an older node may skip.
const Ignorable CmdType = 0x80

// Command types. Never renumber: they are in every node's log.
const (
	// CmdRestored is never proposed (Apply refuses it as unknown): observers are told with a
	// Command of this type that a snapshot was restored and the whole state may have changed.
	CmdRestored           CmdType = 0
	CmdPutRoom            CmdType = 1
	CmdDeleteRoom         CmdType = 2
	CmdPutBinding         CmdType = 3
	CmdDeleteBinding      CmdType = 4
	CmdDeleteRoomBindings CmdType = 5
	CmdExpire             CmdType = 6
	CmdPutBan             CmdType = 7
	CmdLiftBan            CmdType = 8
	CmdSetLists           CmdType = 9
	CmdPutCall            CmdType = 10
	CmdEndCall            CmdType = 11
	CmdPutToken           CmdType = 12
	CmdDeleteToken        CmdType = 13
	CmdDeleteNodeBindings CmdType = 14
	CmdAudit              CmdType = Ignorable | 15
	CmdSetTrunkKey        CmdType = 16
	// CmdSetRealm is ignorable: a node older than it uses its configured sip.domain anyway.
	CmdSetRealm CmdType = Ignorable | 28
)

var cmdNames = map[CmdType]string{
	CmdRestored: "restored",
	CmdPutRoom:  "put-room", CmdDeleteRoom: "delete-room", CmdPutBinding: "put-binding",
	CmdDeleteBinding: "delete-binding", CmdDeleteRoomBindings: "delete-room-bindings",
	CmdExpire: "expire", CmdPutBan: "put-ban", CmdLiftBan: "lift-ban", CmdSetLists: "set-lists",
	CmdPutCall: "put-call", CmdEndCall: "end-call", CmdPutToken: "put-token",
	CmdDeleteToken: "delete-token", CmdDeleteNodeBindings: "delete-node-bindings", CmdAudit: "audit",
	CmdSetTrunkKey: "set-trunk-key", CmdSetRealm: "set-realm",
}

func (t CmdType) String() string {
	if n, ok := cmdNames[t]; ok {
		return n
	}
	return fmt.Sprintf("cmd(%d)", uint8(t))
}

// cmdVersion is the newest payload version this binary reads: JSON payloads are version 1, the
// binary payloads of the hot commands binVersion (binary.go).
const (
	jsonVersion = 1
	cmdVersion  = binVersion
)

// Command is one change to the state: a type and its JSON payload.
type Command struct {
	Type    CmdType
	Version uint8
	Payload []byte
}

// Encode returns the wire form: type byte, version byte, payload.
func (c Command) Encode() []byte {
	b := make([]byte, 0, 2+len(c.Payload))
	b = append(b, byte(c.Type), c.Version)
	return append(b, c.Payload...)
}

// DecodeCommand parses the wire form made by Encode.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) < 2 {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrShortCommand, len(b))
	}
	return Command{Type: CmdType(b[0]), Version: b[1], Payload: b[2:]}, nil
}

func newCommand(t CmdType, payload any) Command {
	p, err := json.Marshal(payload)
	if err != nil {
		// Every payload is a plain struct of this package: failing to marshal is a programming error.
		panic(fmt.Sprintf("state: marshal %s: %v", t, err))
	}
	return Command{Type: t, Version: jsonVersion, Payload: p}
}

type roomKey struct {
	Room string `json:"room"`
}

type bindingKey struct {
	Room    string `json:"room"`
	Contact string `json:"contact"`
}

type prefixKey struct {
	Prefix netip.Prefix `json:"prefix"`
}

type nodeKey struct {
	Node string `json:"node"`
}

type idKey struct {
	ID string `json:"id"`
}

type expireArgs struct {
	Now time.Time `json:"now"`
	// KeepRecords bounds the call record log; 0 keeps the default.
	KeepRecords int `json:"keep_records,omitempty"`
	// KeepAudit bounds the audit log; 0 keeps the default.
	KeepAudit int `json:"keep_audit,omitempty"`
}

// PutRoom creates or replaces a room.
func PutRoom(r Room) Command { return newCommand(CmdPutRoom, r) }

// DeleteRoom removes a room and its bindings.
func DeleteRoom(name string) Command { return newCommand(CmdDeleteRoom, roomKey{name}) }

// PutBinding creates or refreshes a binding (keyed by room and contact).
func PutBinding(b Binding) Command {
	return newBinary(CmdPutBinding, func(w *binWriter) { w.binding(&b) })
}

// DeleteBinding removes one binding, named by its Key (its Contact URI unless it is an RFC 5626
// flow).
func DeleteBinding(room, contact string) Command {
	return newCommand(CmdDeleteBinding, bindingKey{room, contact})
}

// DeleteRoomBindings removes every binding of a room (REGISTER with Contact: * and Expires: 0).
func DeleteRoomBindings(room string) Command {
	return newCommand(CmdDeleteRoomBindings, roomKey{room})
}

// DeleteNodeBindings removes every binding whose flow is owned by node (the node left or died).
func DeleteNodeBindings(node string) Command {
	return newCommand(CmdDeleteNodeBindings, nodeKey{node})
}

// Expire drops bindings and bans that expired at or before now, and trims the record and audit
// logs to their bounds (0 = defaults).
func Expire(now time.Time, keepRecords, keepAudit int) Command {
	return newCommand(CmdExpire, expireArgs{Now: now, KeepRecords: keepRecords, KeepAudit: keepAudit})
}

// PutBan creates or extends a ban.
func PutBan(b Ban) Command { return newCommand(CmdPutBan, b) }

// LiftBan removes the ban of exactly this prefix.
func LiftBan(p netip.Prefix) Command { return newCommand(CmdLiftBan, prefixKey{p}) }

// SetLists replaces the guard's global lists.
func SetLists(l Lists) Command { return newCommand(CmdSetLists, l) }

// PutCall creates or updates an active call.
func PutCall(c Call) Command { return newBinary(CmdPutCall, func(w *binWriter) { w.call(&c) }) }

// EndCall removes an active call and appends its record (Seq is assigned by Apply).
func EndCall(r CallRecord) Command {
	return newBinary(CmdEndCall, func(w *binWriter) { w.record(&r) })
}

// PutToken creates an admin token.
func PutToken(t Token) Command { return newCommand(CmdPutToken, t) }

// DeleteToken revokes an admin token.
func DeleteToken(id string) Command { return newCommand(CmdDeleteToken, idKey{id}) }

// Audit appends an audit entry (Seq is assigned by Apply).
func Audit(e AuditEntry) Command { return newCommand(CmdAudit, e) }

// SetTrunkKey sets the key that signs calls handed from one node to another over the internal
// SIP trunk. It is written once, by the first node, and only if none is set yet.
func SetTrunkKey(key []byte) Command { return newCommand(CmdSetTrunkKey, trunkKey{key}) }

type trunkKey struct {
	Key []byte `json:"key"`
}

// SetRealm records the cluster's SIP domain and digest realm for nodes whose sip.domain is unset.
// It is written once, by the first node to start, and only if none is recorded yet: the stored
// HA1 of every room depends on it.
func SetRealm(realm string) Command { return newCommand(CmdSetRealm, realmArg{realm}) }

type realmArg struct {
	Realm string `json:"realm"`
}

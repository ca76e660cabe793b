package b2bua

import (
	"strings"
	"testing"
	"time"
)

// FuzzTrunkNode: the node VerifyTrunk names (the one place a trunk header is read; the edge
// hands the node to HandleTrunkCall), whatever the header holds: never a panic, and for a
// header SignTrunk made, the signer's node.
func FuzzTrunkNode(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1700000000, 0)
	for _, seed := range []string{
		SignTrunk(key, "edge2", "call-1", "boardroom", now),
		"node=edge1;ts=1;sig=00", "node=", ";;;", "sig=1;node=a=b", "node=edge3 ; ts = 5", "",
		strings.Repeat("node=x;", 200),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		node, ok := VerifyTrunk(key, v, "call-1", "boardroom", now)
		if !ok {
			if node != "" {
				t.Fatalf("unverified %q names node %q", v, node)
			}
			return
		}
		if strings.Contains(node, ";") {
			t.Fatalf("node %q from %q spans fields", node, v)
		}
		if !strings.Contains(v, "node="+node) && !strings.Contains(v, "node = "+node) {
			t.Fatalf("node %q is not in %q", node, v)
		}
	})
}

func TestTrunkNodeOfSignedHeader(t *testing.T) {
	now := time.Now()
	if node, ok := VerifyTrunk([]byte("k"), "", "c", "boardroom", now); ok || node != "" {
		t.Fatalf("no header: %q %v", node, ok)
	}
	v := SignTrunk([]byte("k"), "edge2", "c", "boardroom", now)
	if node, ok := VerifyTrunk([]byte("k"), v, "c", "boardroom", now); !ok || node != "edge2" {
		t.Fatalf("VerifyTrunk = %q %v, want edge2", node, ok)
	}
}

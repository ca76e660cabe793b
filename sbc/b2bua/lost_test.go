package b2bua

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// FuzzTrunkNode: the node named by a trunk header, whatever the header holds: never a panic, and
// the signer's node for a header SignTrunk made.
func FuzzTrunkNode(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, seed := range []string{
		SignTrunk(key, "edge2", "call-1", "boardroom", time.Unix(1700000000, 0)),
		"node=edge1;ts=1;sig=00", "node=", ";;;", "sig=1;node=a=b", "node=edge3 ; ts = 5", "",
		strings.Repeat("node=x;", 200),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		req := sip.NewRequest(sip.INVITE, sip.Uri{User: "boardroom", Host: "video.test"})
		req.AppendHeader(sip.NewHeader(TrunkHeader, v))
		node := trunkNode(req)
		if strings.Contains(node, ";") {
			t.Fatalf("node %q from %q spans fields", node, v)
		}
		if node != "" && !strings.Contains(v, "node="+node) && !strings.Contains(v, "node = "+node) {
			t.Fatalf("node %q is not in %q", node, v)
		}
	})
}

func TestTrunkNodeOfSignedHeader(t *testing.T) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{User: "boardroom", Host: "video.test"})
	if got := trunkNode(req); got != "" {
		t.Fatalf("no header: %q", got)
	}
	req.AppendHeader(sip.NewHeader(TrunkHeader, SignTrunk([]byte("k"), "edge2", "c", "boardroom", time.Now())))
	if got := trunkNode(req); got != "edge2" {
		t.Fatalf("trunkNode = %q, want edge2", got)
	}
}

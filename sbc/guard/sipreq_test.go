package guard

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestRequestOf(t *testing.T) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "boardroom", Host: "video.test"})
	from := &sip.FromHeader{DisplayName: "Visitor", Address: sip.Uri{User: "visitor", Host: "outside.example"}}
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{User: "boardroom", Host: "video.test"}})
	req.AppendHeader(sip.NewHeader("User-Agent", "phone/1"))
	cid := sip.CallIDHeader("c1")
	req.AppendHeader(&cid)
	req.SetSource("198.51.100.7:5070")
	req.SetTransport("TCP")
	r := RequestOf(req)
	want := Request{Source: netip.MustParseAddrPort("198.51.100.7:5070"), Transport: "TCP", Method: "INVITE",
		RURIUser: "boardroom", RURIHost: "video.test", FromName: "Visitor", FromUser: "visitor", FromHost: "outside.example",
		ToUser: "boardroom", ToHost: "video.test", UserAgent: "phone/1", CallID: "c1", MaxForwards: -1}
	if *r != want {
		t.Fatalf("RequestOf = %+v\nwant %+v", *r, want)
	}
	mf := sip.MaxForwardsHeader(0)
	req.AppendHeader(&mf)
	if got := RequestOf(req).MaxForwards; got != 0 {
		t.Fatalf("MaxForwards = %d, want 0", got)
	}
}

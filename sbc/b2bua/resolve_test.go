package b2bua

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// dnsServer answers from a fixed zone on a UDP socket on 127.0.0.1.
func dnsServer(t *testing.T, zone []string) string {
	t.Helper()
	var rrs []dns.RR
	for _, z := range zone {
		rr, err := dns.NewRR(z)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, rr := range rrs {
			if rr.Header().Name == q.Question[0].Name && rr.Header().Rrtype == q.Question[0].Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		if len(m.Answer) == 0 {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestDNSResolver: RFC 3263 against a real DNS server on loopback: NAPTR then SRV then A, SRV
// without NAPTR, A on the default port, an explicit port, IP literals, and transports the node
// cannot use filtered out.
func TestDNSResolver(t *testing.T) {
	server := dnsServer(t, []string{
		`naptr.test. 60 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.naptr.test.`,
		`naptr.test. 60 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.naptr.test.`,
		`_sip._udp.naptr.test. 60 IN SRV 10 10 5070 host1.test.`,
		`_sip._tcp.naptr.test. 60 IN SRV 10 10 5071 host1.test.`,
		`_sip._udp.srv.test. 60 IN SRV 10 10 5072 host1.test.`,
		`_sip._udp.srv.test. 60 IN SRV 20 10 5073 host2.test.`,
		`host1.test. 60 IN A 192.0.2.1`,
		`host2.test. 60 IN AAAA 2001:db8::2`,
		`plain.test. 60 IN A 192.0.2.3`,
	})
	r, err := NewDNSResolver(server, []string{"UDP", "TCP"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		uri  string
		want []string // dest/transport
		err  bool
	}{
		{uri: "sip:bob@naptr.test", want: []string{"192.0.2.1:5071/TCP", "192.0.2.1:5070/UDP"}},
		{uri: "sip:bob@naptr.test;transport=udp", want: []string{"192.0.2.1:5070/UDP"}},
		{uri: "sip:bob@srv.test", want: []string{"192.0.2.1:5072/UDP", "[2001:db8::2]:5073/UDP"}},
		{uri: "sip:bob@plain.test", want: []string{"192.0.2.3:5060/UDP"}},
		{uri: "sip:bob@plain.test:5080", want: []string{"192.0.2.3:5080/UDP"}},
		{uri: "sip:bob@198.51.100.7", want: []string{"198.51.100.7:5060/UDP"}},
		{uri: "sip:bob@[2001:db8::9]:5099;transport=tcp", want: []string{"[2001:db8::9]:5099/TCP"}},
		{uri: "sips:bob@198.51.100.7", err: true}, // TLS is not among the node's transports
		{uri: "sip:bob@missing.test", err: true},
	} {
		var u sip.Uri
		if err := sip.ParseUri(tt.uri, &u); err != nil {
			t.Fatal(err)
		}
		ts, err := r.Resolve(context.Background(), u)
		if tt.err {
			if err == nil {
				t.Errorf("%s: resolved to %+v", tt.uri, ts)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.uri, err)
			continue
		}
		var got []string
		for _, x := range ts {
			got = append(got, x.dest+"/"+x.transport)
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.uri, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: got %v, want %v", tt.uri, got, tt.want)
				break
			}
		}
	}
	if _, err := (&DNSResolver{Server: server, Transports: []string{"UDP"}}).Resolve(context.Background(),
		sip.Uri{Scheme: "sips", Host: "198.51.100.7"}); !errors.Is(err, ErrNoTarget) {
		t.Errorf("sips with UDP only: %v, want ErrNoTarget", err)
	}
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Kernel fast path for latched RTP: a TC ingress program that rewrites a
// datagram from a latched peer to the relay into the datagram the relay would
// send to the other leg's peer, and hands it back to the stack or out of the
// right interface. Anything it does not recognise goes to userspace unchanged.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// All addresses and ports in network byte order.
struct fp_key {
	__u32 saddr; // the latched peer
	__u32 daddr; // the relay socket's address, 0 = any local address
	__u16 sport;
	__u16 dport; // the relay socket's port
};

struct fp_val {
	__u32 new_saddr; // the relay socket facing the other leg, 0 = keep daddr
	__u32 new_daddr; // the other leg's latched peer
	__u16 new_sport;
	__u16 new_dport;
	__u32 oif; // egress interface toward new_daddr, 0 = a local address: the stack delivers
	__u64 pts[2]; // RTP payload types forwarded; others go to userspace
	__u64 packets;
	__u64 bytes; // UDP payload bytes, as userspace counts them
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fp_key);
	__type(value, struct fp_val);
} fp_streams SEC(".maps");

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define UDP_OFF (ETH_HLEN + sizeof(struct iphdr))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))
#define UDP_SRC_OFF (UDP_OFF + offsetof(struct udphdr, source))
#define UDP_DST_OFF (UDP_OFF + offsetof(struct udphdr, dest))

// Headers the program reads: Ethernet, IPv4 without options, UDP, the RTP header.
#define HDRS_LEN (ETH_HLEN + sizeof(struct iphdr) + sizeof(struct udphdr) + 12)

SEC("tc")
int fp_ingress(struct __sk_buff *skb)
{
	// An aggregate (UDP GSO from a local sender, or UDP GRO) carries several
	// datagrams in one skb: the program would check one RTP header and count
	// one packet for all of them. Userspace gets its datagrams one by one.
	if (skb->gso_size)
		return TC_ACT_UNSPEC;

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return TC_ACT_UNSPEC;
	if (ip->frag_off & bpf_htons(0x3fff)) // MF or an offset: fragments go to userspace
		return TC_ACT_UNSPEC;
	// A UDP datagram whose payload sits in page fragments (a sender with
	// UDP_SEGMENT set, some NIC drivers) may have less than the UDP and RTP
	// headers in its linear part: pull them in (only for UDP: other traffic
	// is left as it is) and read the headers again.
	if (data + HDRS_LEN > data_end) {
		if (skb->len < HDRS_LEN || bpf_skb_pull_data(skb, HDRS_LEN))
			return TC_ACT_UNSPEC;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return TC_ACT_UNSPEC;
	}
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *rtp = (void *)(udp + 1);
	if ((void *)(rtp + 2) > data_end)
		return TC_ACT_UNSPEC;

	struct fp_key k = {
		.saddr = ip->saddr, .daddr = ip->daddr, .sport = udp->source, .dport = udp->dest,
	};
	struct fp_val *v = bpf_map_lookup_elem(&fp_streams, &k);
	if (!v) {
		k.daddr = 0;
		v = bpf_map_lookup_elem(&fp_streams, &k);
		if (!v)
			return TC_ACT_UNSPEC;
	}

	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(struct udphdr) + 12 || (rtp[0] >> 6) != 2)
		return TC_ACT_UNSPEC; // not RTP: userspace classifies it
	__u8 pt = rtp[1] & 0x7f;
	if (pt >= 64 && pt <= 95)
		return TC_ACT_UNSPEC; // RTCP (rtcp-mux): userspace
	if (!(v->pts[pt >> 6] & (1ULL << (pt & 63))))
		return TC_ACT_UNSPEC; // payload type not offered: userspace decides

	__u32 old_saddr = ip->saddr, old_daddr = ip->daddr;
	__u16 old_sport = udp->source, old_dport = udp->dest;
	__u32 new_saddr = v->new_saddr ? v->new_saddr : old_daddr;
	__u32 new_daddr = v->new_daddr;
	__u16 new_sport = v->new_sport, new_dport = v->new_dport;

	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, ulen - sizeof(struct udphdr));

	// UDP checksum first (pseudo header), then the IP header checksum; the
	// data pointers are invalid after the first helper call.
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_saddr, new_saddr, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_daddr, new_daddr, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_sport, new_sport, BPF_F_MARK_MANGLED_0 | 2);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_dport, new_dport, BPF_F_MARK_MANGLED_0 | 2);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_saddr, new_saddr, 4);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_daddr, new_daddr, 4);
	bpf_skb_store_bytes(skb, IP_SRC_OFF, &new_saddr, 4, 0);
	bpf_skb_store_bytes(skb, IP_DST_OFF, &new_daddr, 4, 0);
	bpf_skb_store_bytes(skb, UDP_SRC_OFF, &new_sport, 2, 0);
	bpf_skb_store_bytes(skb, UDP_DST_OFF, &new_dport, 2, 0);

	// Another host: out of the interface userspace found the route through,
	// with the neighbour (ARP) resolution the stack would do.
	if (v->oif)
		return bpf_redirect_neigh(v->oif, NULL, 0, 0);
	// A local destination (loopback, another address of this host): the
	// stack delivers it by the rewritten header (TC_ACT_UNSPEC is TCX_NEXT:
	// other TCX programs still see the packet, as they do every packet this
	// program does not take). On lo the skb keeps the local route it was sent
	// with, so no 127/8 input route lookup (which would refuse it) happens.
	return TC_ACT_UNSPEC;
}

char __license[] SEC("license") = "Dual BSD/GPL";

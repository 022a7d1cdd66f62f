/* SPDX-License-Identifier: GPL-2.0 */
/* The one packet parser: a cursor over the frame, one small function per
 * header, each bounds check right before the read it guards.
 */
#ifndef XDPR_PARSING_H
#define XDPR_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct cursor {
	void *pos;
	void *end;
};

static __always_inline struct ethhdr *parse_eth(struct cursor *c)
{
	struct ethhdr *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return NULL;
	c->pos = eth + 1;
	return eth;
}

/* Only the fixed 20-byte header: frames with options go to the kernel, so
 * the caller checks ihl before trusting anything past it.
 */
static __always_inline struct iphdr *parse_ipv4(struct cursor *c)
{
	struct iphdr *iph = c->pos;

	if ((void *)(iph + 1) > c->end)
		return NULL;
	c->pos = iph + 1;
	return iph;
}

static __always_inline struct ipv6hdr *parse_ipv6(struct cursor *c)
{
	struct ipv6hdr *ip6h = c->pos;

	if ((void *)(ip6h + 1) > c->end)
		return NULL;
	c->pos = ip6h + 1;
	return ip6h;
}

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

/* Skip up to two VLAN tags (802.1Q, 802.1ad); the protocol inside them. */
static __always_inline __be16 parse_vlans(struct cursor *c, __be16 proto)
{
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_tag *tag = c->pos;

		if (proto != bpf_htons(0x8100) && proto != bpf_htons(0x88a8))
			break;
		if ((void *)(tag + 1) > c->end)
			return 0;
		proto = tag->proto;
		c->pos = tag + 1;
	}
	return proto;
}

/* The "ports" the kernel's flow dissector gives the FIB's multipath hash
 * (proto_ports_offt()): the first four bytes of TCP, UDP, UDP-Lite, SCTP and
 * DCCP, and the SPI of ESP (offset 0) and AH (offset 4). Zero when the
 * protocol has none or the header is truncated: the dissector finds none
 * either. "Truncated" is judged against the datagram's end (l3_end), not the
 * frame's: ip_rcv()/ipv6_rcv() trim link-layer padding before anything
 * hashes, so bytes of padding are never ports.
 */
static __always_inline void parse_ports(struct cursor *c, const void *l3_end,
					__u8 proto, __be16 *sport,
					__be16 *dport)
{
	__be16 *ports = c->pos;

	*sport = 0;
	*dport = 0;
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case IPPROTO_DCCP:
	case IPPROTO_ESP:
		break;
	case IPPROTO_AH:
		ports += 2;
		break;
	default:
		return;
	}
	if ((void *)(ports + 2) > c->end || (void *)(ports + 2) > l3_end)
		return;
	*sport = ports[0];
	*dport = ports[1];
}

#endif

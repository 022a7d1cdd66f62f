/* SPDX-License-Identifier: GPL-2.0 */
/* The one packet parser, for every layer the router and the firewall read:
 * a cursor over the frame, one small function per header (Ethernet, VLAN
 * tags, IPv4, IPv6 and its extension headers, transport ports), each bounds
 * check right before the read it guards.
 */
#ifndef XDPR_PARSING_H
#define XDPR_PARSING_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"

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

/* The fragment bits of the IPv4 frag_off field (the kernel's include/net/ip.h). */
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

/* Any IPv6 extension header (ipv6_ext_hdr() and the protocols after it the
 * kernel also treats as extensions): the router hands such frames to the
 * kernel.
 */
static __always_inline bool ipv6_is_extension(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_FRAGMENT:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_MH:
	case 139:	/* HIP */
	case 140:	/* shim6 */
	case 253:	/* experimental */
	case 254:
		return true;
	default:
		return false;
	}
}

/* The extension headers parse_ipv6_extensions() walks. */
static __always_inline bool ipv6_walked_extension(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING ||
	       next == IPPROTO_DSTOPTS || next == IPPROTO_AH ||
	       next == IPPROTO_FRAGMENT;
}

/* Past up to four IPv6 extension headers to the transport header, within
 * the frame (end, for the verifier) and the datagram (l3_end, for the
 * meaning). *proto is the header type reached. NULL for a non-first
 * fragment (no transport header); a chain longer than we walk, or cut
 * short, leaves *proto an extension header.
 */
static __always_inline const void *parse_ipv6_extensions(const struct ipv6hdr *ip6h,
							 const void *l3_end,
							 const void *end,
							 __u32 *proto)
{
	const __u8 *h = (const __u8 *)(ip6h + 1);
	__u8 next = ip6h->nexthdr;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		if ((const void *)(h + 8) > end || (const void *)(h + 8) > l3_end)
			break;
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING ||
		    next == IPPROTO_DSTOPTS) {
			next = h[0];
			h += (h[1] + 1) * 8;
		} else if (next == IPPROTO_AH) {
			next = h[0];
			h += (h[1] + 2) * 4;
		} else if (next == IPPROTO_FRAGMENT) {
			next = h[0];
			if (*(const __be16 *)(h + 2) & bpf_htons(0xfff8)) {
				*proto = next;
				return NULL;
			}
			h += 8;
		} else {
			break;
		}
	}
	*proto = next;
	return h;
}

/* The two 16-bit words at l4 (the ports of a protocol in PORT_PROTOS),
 * or NULL unless both the frame (end) and the datagram (l3_end) hold them.
 */
static __always_inline const __be16 *parse_port_words(const void *l4,
						       const void *l3_end,
						       const void *end)
{
	const __be16 *words = l4;

	if ((const void *)(words + 2) > end || (const void *)(words + 2) > l3_end)
		return NULL;
	return words;
}

/* The "ports" the kernel's flow dissector gives the FIB's multipath hash
 * (proto_ports_offt()): the first four bytes of TCP, UDP, UDP-Lite, SCTP and
 * DCCP (l4_has_ports(), generated from abi.py), and the SPI of ESP (offset
 * 0) and AH (offset 4). Zero when the protocol has none or the header is
 * truncated: the dissector finds none either. "Truncated" is judged against
 * the datagram's end (l3_end), not the frame's: ip_rcv()/ipv6_rcv() trim
 * link-layer padding before anything hashes, so bytes of padding are never
 * ports.
 */
static __always_inline void parse_ports(struct cursor *c, const void *l3_end,
					__u8 proto, __be16 *sport,
					__be16 *dport)
{
	const __be16 *ports = c->pos;

	*sport = 0;
	*dport = 0;
	if (proto == IPPROTO_AH)
		ports += 2;
	else if (!l4_has_ports(proto) && proto != IPPROTO_ESP)
		return;
	ports = parse_port_words(ports, l3_end, c->end);
	if (!ports)
		return;
	*sport = ports[0];
	*dport = ports[1];
}

#endif

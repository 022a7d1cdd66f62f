/* SPDX-License-Identifier: GPL-2.0 */
/* What forwarding changes in a frame: MACs, TTL / hop limit, IPv4 checksum. */
#ifndef XDPR_REWRITE_H
#define XDPR_REWRITE_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* The same arithmetic as the kernel's ip_decrease_ttl(), so the checksum we
 * write is the one Linux forwarding writes, to the bit (0x0000 vs 0xffff).
 */
static __always_inline void ipv4_decrease_ttl(struct iphdr *iph)
{
	__u32 check = (__u32)iph->check;

	check += (__u32)bpf_htons(0x0100);
	iph->check = (__sum16)(check + (check >= 0xFFFF));
	iph->ttl--;
}

static __always_inline void rewrite_macs(struct ethhdr *eth,
					 const unsigned char *dmac,
					 const unsigned char *smac)
{
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
}

#endif

/* SPDX-License-Identifier: GPL-2.0 */
/* Steering rules: after the firewall has let a frame through and before the
 * router decides where it goes (forward, or pass to the kernel), the first
 * matching rule hands the frame
 *   - to another CPU (STEER_CPU): a cpumap entry without a program, so the
 *     kernel builds the skb and runs its whole stack for the frame there;
 *   - to user space (STEER_XSK): the AF_XDP socket bound to the frame's own
 *     interface and rx queue (xdpr_st_xsk).
 * A rule whose target is missing (no socket on that queue, no cpumap entry)
 * counts the frame as missed and the frame goes on as if no rule had
 * matched.
 *
 * The match language is the firewall's (src/xdprouter/firewall/rules.py):
 * prefixes or the firewall's named sets, protocol, port ranges, ICMP type,
 * ingress interface. At most STEER_MAX_RULES rules, scanned in order by a
 * bpf_loop() in a global function (verified once, on its own). With no rule
 * loaded a frame pays one array read (steer_live()).
 *
 * steer_ipv4()/steer_ipv6() return -1 to go on, or a reason (the redirect
 * is already set up).
 */
#ifndef XDPR_STEER_H
#define XDPR_STEER_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"
#include "maps.h"
#include "firewall.h"
#include "frame.h"
#include "parsing.h"

/* What the rules look at, gathered from the headers. */
struct steer_pkt {
	__u32 src[4];	/* network order, IPv4 in the first word */
	__u32 dst[4];
	__u32 gen;
	__u32 nrules;
	__u32 family;	/* 4 or 6 */
	__u32 ifindex;
	__u32 proto;
	__u32 sport;	/* host order, when has_ports */
	__u32 dport;
	__u32 icmp_type;	/* when has_icmp */
	__u32 has_ports;
	__u32 has_icmp;
};

/* Is any rule loaded: one read, all a frame pays without rules. */
static __always_inline bool steer_on(void)
{
	__u32 key = 0;
	struct steer_state *st = bpf_map_lookup_elem(&xdpr_st_state, &key);

	return st && st->enabled;
}

/* Is the address in the firewall's set in this slot? */
static __always_inline bool steer_in_set(const struct steer_pkt *p, __u32 slot,
					 const __u32 *addr)
{
	return fw_set_contains((const __u8 *)addr, p->family, slot);
}

static __always_inline bool steer_prefix(const __u32 *addr, const __u32 *net,
					 const __u32 *mask)
{
	return (addr[0] & mask[0]) == net[0] && (addr[1] & mask[1]) == net[1] &&
	       (addr[2] & mask[2]) == net[2] && (addr[3] & mask[3]) == net[3];
}

static __always_inline bool steer_rule_matches(const struct steer_rule *r,
					       const struct steer_pkt *p)
{
	__u16 f = r->flags;

	if (r->family && r->family != p->family)
		return false;
	if (r->ifindex && r->ifindex != p->ifindex)
		return false;
	if ((f & STEER_HAS_PROTO) && r->proto != p->proto)
		return false;
	if ((f & STEER_HAS_SPORT) &&
	    (!p->has_ports || p->sport < r->sport_lo || p->sport > r->sport_hi))
		return false;
	if ((f & STEER_HAS_DPORT) &&
	    (!p->has_ports || p->dport < r->dport_lo || p->dport > r->dport_hi))
		return false;
	if ((f & STEER_HAS_ICMP_TYPE) &&
	    (!p->has_icmp || p->icmp_type != r->icmp_type))
		return false;
	if ((f & STEER_HAS_SRC) && !steer_prefix(p->src, r->src, r->src_mask))
		return false;
	if ((f & STEER_HAS_DST) && !steer_prefix(p->dst, r->dst, r->dst_mask))
		return false;
	if ((f & STEER_HAS_SRC_SET) && !steer_in_set(p, r->src_set, p->src))
		return false;
	if ((f & STEER_HAS_DST_SET) && !steer_in_set(p, r->dst_set, p->dst))
		return false;
	return true;
}

/* bpf_loop()'s context must be on the stack: the packet by pointer. */
struct steer_loop {
	const struct steer_pkt *p;
	__s32 pos;
};

static long steer_step(__u64 i, void *data)
{
	struct steer_loop *l = data;
	const struct steer_pkt *p = l->p;
	__u32 key = p->gen * STEER_MAX_RULES + (__u32)i;
	const struct steer_rule *r = bpf_map_lookup_elem(&xdpr_st_rules, &key);

	if (!r)
		return 1;
	if (steer_rule_matches(r, p)) {
		l->pos = (__s32)i;
		return 1;
	}
	return 0;
}

/* The first matching rule's position in the live generation, -1 if none.
 * A global function: the verifier checks it once, on its own.
 */
__noinline int steer_match(const struct steer_pkt *p)
{
	struct steer_loop l = { .p = p, .pos = -1 };

	if (!p)
		return -1;
	bpf_loop(p->nrules < STEER_MAX_RULES ? p->nrules : STEER_MAX_RULES,
		 steer_step, &l, 0);
	return l.pos;
}

/* Ports, or the ICMP type, at l4 if the datagram holds them. */
static __always_inline void steer_l4(struct steer_pkt *p, const void *l4,
				     const void *l3_end, const void *end)
{
	const __u8 *type = l4;
	const __be16 *ports;

	if (p->proto == (p->family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6)) {
		if ((const void *)(type + 1) <= end &&
		    (const void *)(type + 1) <= l3_end) {
			p->icmp_type = *type;
			p->has_icmp = 1;
		}
		return;
	}
	if (!l4_has_ports(p->proto))
		return;
	ports = parse_port_words(l4, l3_end, end);
	if (!ports)
		return;
	p->sport = bpf_ntohs(ports[0]);
	p->dport = bpf_ntohs(ports[1]);
	p->has_ports = 1;
}

static __always_inline void steer_count(__u32 id, bool missed, __u64 len)
{
	struct steer_counter *c = bpf_map_lookup_elem(&xdpr_st_count, &id);

	if (!c)
		return;
	if (missed) {
		c->missed++;
		c->missed_bytes += len;
	} else {
		c->packets++;
		c->bytes += len;
	}
}

/* The first matching rule's redirect, or -1 (no rule, or its target is
 * missing: counted as missed, the frame goes on). A failed
 * bpf_redirect_map() (flags 0: XDP_ABORTED when the key is empty) leaves
 * no redirect behind, so the router's own devmap redirect later is the
 * one that counts.
 */
static __always_inline int steer_redirect(struct xdp_md *ctx,
					  const struct steer_pkt *p, __u32 slot)
{
	const struct steer_rule *r;
	__u64 len = xdp_frame_len(ctx);
	__u32 key;
	int pos = steer_match(p);

	if (pos < 0 || pos >= STEER_MAX_RULES)
		return -1;
	key = p->gen * STEER_MAX_RULES + pos;
	r = bpf_map_lookup_elem(&xdpr_st_rules, &key);
	if (!r)
		return -1;
	if (r->action == STEER_CPU) {
		if (bpf_redirect_map(&xdpr_st_cpus, r->target, 0) == XDP_REDIRECT) {
			steer_count(r->id, false, len);
			return REASON_STEER_CPU;
		}
	} else if (r->action == STEER_XSK && ctx->rx_queue_index < STEER_XSK_QUEUES) {
		key = slot * STEER_XSK_QUEUES + ctx->rx_queue_index;
		if (bpf_redirect_map(&xdpr_st_xsk, key, 0) == XDP_REDIRECT) {
			steer_count(r->id, false, len);
			return REASON_STEER_XSK;
		}
	}
	steer_count(r->id, true, len);
	return -1;
}

/* A frame without VLAN tags whose IP header (checked by the caller: version,
 * IHL for IPv4) follows the Ethernet header, parsed again here: a global
 * function takes no packet pointers, and it keeps struct steer_pkt off the
 * main program's stack, which the firewall's calls nearly fill. Only the
 * first IPv4 fragment has ports; IPv6 ports are past the extension headers
 * parse_ipv6_extensions() walks, and a chain it cannot finish leaves the
 * frame without ports.
 */
__noinline int steer_frame(struct xdp_md *ctx, __u32 slot, __u32 family)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct steer_pkt p = {};
	__u32 key = 0;
	struct steer_state *st = bpf_map_lookup_elem(&xdpr_st_state, &key);
	const void *l3_end;

	if (!st || !st->enabled)
		return -1;
	p.gen = st->gen & 1;
	p.nrules = st->nrules[p.gen];
	p.ifindex = ctx->ingress_ifindex;
	if (family == 4) {
		const struct iphdr *iph = data + ETH_HLEN;

		if ((void *)(iph + 1) > end)
			return -1;
		l3_end = (void *)iph + bpf_ntohs(iph->tot_len);
		p.family = 4;
		p.proto = iph->protocol;
		p.src[0] = iph->saddr;
		p.dst[0] = iph->daddr;
		if (!(iph->frag_off & bpf_htons(IP_OFFSET)))
			steer_l4(&p, (void *)iph + (iph->ihl & 0xf) * 4, l3_end, end);
	} else {
		const struct ipv6hdr *ip6h = data + ETH_HLEN;
		const void *l4;

		if ((void *)(ip6h + 1) > end)
			return -1;
		l3_end = (void *)(ip6h + 1) + bpf_ntohs(ip6h->payload_len);
		p.family = 6;
		__builtin_memcpy(p.src, &ip6h->saddr, 16);
		__builtin_memcpy(p.dst, &ip6h->daddr, 16);
		l4 = parse_ipv6_extensions(ip6h, l3_end, end, &p.proto);
		if (l4 && !ipv6_walked_extension(p.proto))
			steer_l4(&p, l4, l3_end, end);
	}
	return steer_redirect(ctx, &p, slot);
}

/* Hooks for route_ipv4()/route_ipv6(): -1 to go on, or a reason. */
static __always_inline int steer_ipv4(struct xdp_md *ctx, __u32 slot)
{
	return steer_on() ? steer_frame(ctx, slot, 4) : -1;
}

static __always_inline int steer_ipv6(struct xdp_md *ctx, __u32 slot)
{
	return steer_on() ? steer_frame(ctx, slot, 6) : -1;
}

#endif

// SPDX-License-Identifier: GPL-2.0
/* xdprouter's fast path: forward IPv4 and IPv6 with the kernel's own FIB and
 * neighbour table, and hand everything the fast path cannot finish exactly as
 * Linux would (ICMP errors, neighbour resolution, fragmentation, local
 * delivery) to the kernel with XDP_PASS.
 *
 * The rule: forward only a frame Linux forwarding would forward, with the
 * bytes Linux would send. Anything in doubt goes to the kernel.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"
#include "maps.h"
#include "frame.h"
#include "parsing.h"
#include "rewrite.h"
#include "firewall.h"
#include "steer.h"
#include "rx_batch.h"
#include "fib6_local.h"
#include "capture.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
/* ICMP error types (linux/icmp.h drags in libc headers) */
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT 5
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
/* a load the compiler must make, and make once, where it is written */
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

static __always_inline int record(__u32 slot, int reason, __u64 bytes)
{
	struct iface_stats *st = bpf_map_lookup_elem(&xdpr_stats, &slot);

	if (st && reason >= 0 && reason < REASON_MAX) {
		st->reasons[reason].packets++;
		st->reasons[reason].bytes += bytes;
	}
	return reason_action(reason);
}

/* ip_fast_csum() over the fixed header: valid when the folded sum is ~0. */
static __always_inline bool ipv4_csum_ok(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*iph) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/* The sources and destinations ip_route_input_slow() refuses before it
 * looks at a route (route_localnet is off by default).
 */
static __always_inline int ipv4_martian(__be32 saddr, __be32 daddr)
{
	__u32 s = bpf_ntohl(saddr), d = bpf_ntohl(daddr);

	if ((s >> 28) == 0xe || s == 0xffffffff || (s >> 24) == 0 || (s >> 24) == 127)
		return REASON_MARTIAN_SRC;
	if ((d >> 28) == 0xe)
		return REASON_MULTICAST;
	if (d == 0xffffffff)
		return REASON_NOT_FORWARDED;
	if ((d >> 24) == 0 || (d >> 24) == 127)
		return REASON_MARTIAN_DST;
	return -1;
}

static __always_inline bool icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH ||
	       type == ICMP_REDIRECT || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/* Map a bpf_fib_lookup() result to a reason; -1 means "go ahead". The kernel
 * checks the TTL in ip_forward()/ip6_forward(), which it only reaches for a
 * forwarding route, so expiry is decided here too.
 */
static __always_inline int fib_reason(int rc, __u8 ttl)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_NO_NEIGH:
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		if (ttl <= 1)
			return REASON_TTL_EXPIRED;
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
			return REASON_NO_NEIGH;	/* the kernel resolves it */
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return REASON_FRAG_NEEDED; /* fragments, or ICMP */
		return -1;
	case BPF_FIB_LKUP_RET_BLACKHOLE:
		return REASON_BLACKHOLE; /* Linux drops these silently too */
	case BPF_FIB_LKUP_RET_UNREACHABLE:
		return REASON_UNREACHABLE;
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return REASON_PROHIBIT;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return REASON_NOT_FORWARDED;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return REASON_FWD_DISABLED;
	default:	/* UNSUPP_LWT, or a negative error */
		return REASON_UNSUPPORTED_ROUTE;
	}
}

/* The lookup's whole input as FIB_KEY_WORDS words. Each field is read at
 * the width it was written with: a wide load over narrow stores would stall
 * the CPU (no store forwarding) for longer than the compare takes.
 */
static __always_inline void fib_key(__u64 *k, const struct bpf_fib_lookup *fib)
{
	k[0] = fib->family | (__u64)fib->l4_protocol << 8 |
	       (__u64)fib->sport << 16 | (__u64)fib->dport << 32 |
	       (__u64)fib->tot_len << 48;
	if (fib->family == AF_INET) {
		k[1] = fib->ifindex | (__u64)fib->tos << 32;
		k[2] = fib->ipv4_src | (__u64)fib->ipv4_dst << 32;
		k[3] = k[4] = k[5] = 0;
		return;
	}
	k[1] = fib->ifindex | (__u64)fib->flowinfo << 32;
	k[2] = fib->ipv6_src[0] | (__u64)fib->ipv6_src[1] << 32;
	k[3] = fib->ipv6_src[2] | (__u64)fib->ipv6_src[3] << 32;
	k[4] = fib->ipv6_dst[0] | (__u64)fib->ipv6_dst[1] << 32;
	k[5] = fib->ipv6_dst[2] | (__u64)fib->ipv6_dst[3] << 32;
}

/* Is this IPv6 address one of the local table's (xdpr_local6)? An empty
 * slot ends the search; a map that cannot be read says "yes", which only
 * costs the full lookup.
 */
static __always_inline bool ipv6_is_local(const __u32 *addr)
{
	__u32 fold = bpf_ntohl(addr[0] ^ addr[1] ^ addr[2] ^ addr[3]);
	__u32 home = (fold * LOCAL4_MULT) >> (32 - LOCAL6_BITS);

	for (__u32 i = 0; i < LOCAL6_PROBES; i++) {
		__u32 key = (home + i) & (LOCAL6_SLOTS - 1);
		struct local6_addr *slot = bpf_map_lookup_elem(&xdpr_local6, &key);

		if (!slot)
			return true;
		if (slot->words[0] == addr[0] && slot->words[1] == addr[1] &&
		    slot->words[2] == addr[2] && slot->words[3] == addr[3])
			return true;
		if (!(slot->words[0] | slot->words[1] | slot->words[2] | slot->words[3]))
			return false;
	}
	return true;
}

/* May this IPv6 destination be looked up in the main table alone? Only
 * while the control plane's copy of the local table is complete and the
 * table unchanged since, with no policy rules, and for a destination that
 * is none of the local table's (fib6_local.h). The copy's generation is
 * read again after the search: a copy rewritten meanwhile is not trusted.
 */
static __always_inline bool ipv6_main_only(struct xdp_md *ctx, const __u32 *dst)
{
	const struct local6_state *st;
	__u32 zero = 0, gen;
	int sernum;

	st = bpf_map_lookup_elem(&xdpr_local6_ver, &zero);
	if (!st || !st->complete)
		return false;
	gen = READ_ONCE(st->gen);
	if (fib6_local_state(ctx, &sernum) != FIB6_LOCAL_OK || sernum != st->sernum)
		return false;
	if (ipv6_is_local(dst))
		return false;
	return READ_ONCE(st->gen) == gen;
}

/* bpf_fib_lookup(), for IPv6 in the main table alone where that gives the
 * same answer: the local table's walk is 13-18 ns of the ~120 an IPv6
 * lookup takes (docs/performance.md). BPF_FIB_LOOKUP_DIRECT looks in the
 * ingress device's VRF table or main; without rules there is no VRF.
 */
static __always_inline int fib_lookup(struct xdp_md *ctx,
				      struct bpf_fib_lookup *fib,
				      struct fib_hint *h)
{
	if (fib->family == AF_INET6 && ipv6_main_only(ctx, fib->ipv6_dst)) {
		if (h)
			h->main_only++;
		return bpf_fib_lookup(ctx, fib, sizeof(*fib), BPF_FIB_LOOKUP_DIRECT);
	}
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* bpf_fib_lookup(), or its result for the same input earlier in this
 * receive batch.
 *
 * Linux looks a route up once for a run of packets to the same destination
 * in one list of received packets (ip_route_use_hint()); per frame, the FIB
 * lookup is most of the fast path's cost. So a frame whose whole lookup input
 * (ingress, addresses, tos or flow label, protocol, ports, length) equals the
 * previous successful lookup's on this CPU reuses its result, if both are in
 * one NAPI poll (rx_batch.h): a route, rule or neighbour change reaches the
 * next poll. Every devmap redirect in a poll of an interface we are attached
 * to natively is ours (the control plane sets IFACE_ROUTE_HINT only there),
 * and each follows a lookup here, so the first redirect of a poll comes from
 * a real lookup, which replaced the hint: a hint never outlives its poll.
 * A run's second frame stores the result and the third reuses it, so
 * interleaved flows pay no more than a compare and a key store.
 *
 * A global function: the verifier checks it once, on its own, instead of
 * every path after it once per way through it.
 */
__attribute__((noinline))
int fib_lookup_hinted(struct xdp_md *ctx, struct bpf_fib_lookup *fib,
		      __u32 hinted)
{
	__u64 k[FIB_KEY_WORDS];
	struct fib_hint *h;
	__u32 zero = 0;
	int rc;

	if (!fib)
		return -1;
	h = bpf_map_lookup_elem(&xdpr_fib_hint, &zero);
	if (!hinted || !h)
		return fib_lookup(ctx, fib, h);
	fib_key(k, fib);
	if (h->key[0] != k[0] || h->key[1] != k[1] || h->key[2] != k[2] ||
	    h->key[3] != k[3] || h->key[4] != k[4] || h->key[5] != k[5]) {
		__builtin_memcpy(h->key, k, sizeof(k));
		h->ready = 0;
		return fib_lookup(ctx, fib, h);
	}
	if (h->ready && in_redirect_batch()) {
		h->uses++;
		__builtin_memcpy(fib, h->out, sizeof(*fib));
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	rc = fib_lookup(ctx, fib, h);
	h->ready = rc == BPF_FIB_LKUP_RET_SUCCESS;
	if (h->ready)
		__builtin_memcpy(h->out, fib, sizeof(*fib));
	return rc;
}

/* Where the frame leaves: -1 to go ahead, or why it cannot. For another
 * interface this already sets the devmap redirect (with XDP_PASS as the
 * answer when the egress is not in the devmap, so no separate lookup), while
 * the frame is still untouched.
 */
static __always_inline int egress_reason(struct xdp_md *ctx,
					 const struct iface_config *cfg,
					 __u32 egress, bool ipv4)
{
	if (egress == ctx->ingress_ifindex) {
		/* Linux forwards it and also tells the sender about the better
		 * next hop (an ICMP redirect); only the kernel does that.
		 */
		if (!ipv4 || (cfg->flags & IFACE_SEND_REDIRECTS))
			return REASON_SEND_REDIRECT;
		/* veth kicks its peer after XDP_TX only if the peer runs XDP:
		 * the frame would wait for the next one. A redirect always does.
		 */
		if (!(cfg->flags & IFACE_TX_VIA_DEVMAP))
			return -1;
	}
	if (bpf_redirect_map(&xdpr_tx_ports, egress, XDP_PASS) != XDP_REDIRECT)
		return REASON_EGRESS_NOT_ATTACHED;
	return -1;
}

/* Trim link-layer padding as ip_rcv()/ipv6_rcv() do, then rewrite. The
 * redirect itself was set up by egress_reason().
 */
static __always_inline int forward(struct xdp_md *ctx,
				   const struct iface_config *cfg,
				   const struct bpf_fib_lookup *fib,
				   __u32 l3_len, bool ipv4)
{
	__u32 frame_len = xdp_frame_len(ctx);
	void *data, *data_end;
	struct ethhdr *eth;

	if (frame_len > ETH_HLEN + l3_len &&
	    bpf_xdp_adjust_tail(ctx, (int)(ETH_HLEN + l3_len) - (int)frame_len))
		return REASON_MALFORMED;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if (ipv4) {
		struct iphdr *iph = data + ETH_HLEN;

		if ((void *)(iph + 1) > data_end)
			return REASON_INTERNAL_ERROR;	/* trimmed: can't pass as is */
		ipv4_decrease_ttl(iph);
	} else {
		struct ipv6hdr *ip6h = data + ETH_HLEN;

		if ((void *)(ip6h + 1) > data_end)
			return REASON_INTERNAL_ERROR;
		ip6h->hop_limit--;
	}
	rewrite_macs(eth, fib->dmac, fib->smac);

	if (fib->ifindex != ctx->ingress_ifindex)
		return REASON_FORWARD;
	return cfg->flags & IFACE_TX_VIA_DEVMAP ? REASON_TX_VIA_DEVMAP :
						   REASON_TX_SAME_IFACE;
}

/* Is addr one of ours? The control plane puts each address at its home slot
 * or one of the next LOCAL4_PROBES - 1; an empty slot ends the search.
 */
static __always_inline bool ipv4_is_local(__be32 addr)
{
	__u32 home = (bpf_ntohl(addr) * LOCAL4_MULT) >> (32 - LOCAL4_BITS);

	for (__u32 i = 0; i < LOCAL4_PROBES; i++) {
		__u32 key = (home + i) & (LOCAL4_SLOTS - 1);
		__be32 *slot = bpf_map_lookup_elem(&xdpr_local4, &key);

		if (!slot || !*slot)
			return false;
		if (*slot == addr)
			return true;
	}
	return false;
}

/* fib_validate_source(), in the form the kernel uses for this interface.
 *
 * Quick form (no rp_filter, no policy rules, no custom local routes): only a
 * source that is one of our own addresses is a martian (xdpr_local4).
 *
 * Full form (IFACE_SOURCE_CHECK_FULL): the source is looked up as a
 * destination, entering by the egress device. Without rp_filter a route back
 * that is local, broadcast, multicast or anycast makes a martian, a failed
 * lookup is accepted; "no route" and "not unicast" look the same from here,
 * so both go to the kernel. With rp_filter only a unicast route back passes,
 * and in strict mode only one leaving by the ingress interface.
 */
static __always_inline int ipv4_source_reason(struct xdp_md *ctx,
					      const struct iface_config *cfg,
					      const struct bpf_fib_lookup *fwd,
					      const struct iphdr *iph)
{
	struct bpf_fib_lookup rev = {};
	int rc;

	if (!(cfg->flags & IFACE_SOURCE_CHECK_FULL))
		return ipv4_is_local(iph->saddr) ? REASON_MARTIAN_SRC : -1;

	rev.family = AF_INET;
	rev.tos = iph->tos;
	rev.l4_protocol = iph->protocol;
	rev.sport = fwd->dport;	/* fib4_rules_early_flow_dissect() swaps them */
	rev.dport = fwd->sport;
	rev.ifindex = fwd->ifindex;	/* the egress device, as flowi4_iif */
	rev.ipv4_src = iph->daddr;
	rev.ipv4_dst = iph->saddr;
	rc = bpf_fib_lookup(ctx, &rev, sizeof(rev), BPF_FIB_LOOKUP_SKIP_NEIGH);

	if (cfg->flags & (IFACE_RP_FILTER_STRICT | IFACE_RP_FILTER_LOOSE)) {
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return REASON_UNVERIFIED_SOURCE;
		/* a multipath route back may use the ingress on another leg */
		if ((cfg->flags & IFACE_RP_FILTER_STRICT) &&
		    rev.ifindex != ctx->ingress_ifindex)
			return REASON_UNVERIFIED_SOURCE;
		return -1;
	}
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return -1;
	default:	/* NOT_FWDED: not unicast, or no route; or can't tell */
		return REASON_UNVERIFIED_SOURCE;
	}
}

static __always_inline int route_ipv4(struct xdp_md *ctx,
				      const struct iface_config *cfg,
				      struct cursor *c, bool ours)
{
	struct bpf_fib_lookup fib __attribute__((aligned(8))) = {};
	struct iphdr *iph = parse_ipv4(c);
	void *l3_end;
	__u16 tot_len;
	int reason;

	if (!iph || iph->version != 4 || iph->ihl < 5)
		return REASON_MALFORMED;
	reason = firewall_ipv4(ctx, iph, c->end);
	if (reason >= 0)
		return reason;
	if (!ours)
		return REASON_NOT_OUR_MAC;
	reason = steer_ipv4(ctx, cfg->slot); /* include/steer.h */
	if (reason >= 0)
		return reason;
	if (iph->ihl != 5)
		return REASON_IP_OPTIONS;
	if (!ipv4_csum_ok(iph))
		return REASON_BAD_CHECKSUM;
	/* ip_rcv(): against the whole frame (every buffer of a jumbo one) */
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < sizeof(*iph) || ETH_HLEN + tot_len > xdp_frame_len(ctx))
		return REASON_MALFORMED;
	reason = ipv4_martian(iph->saddr, iph->daddr);
	if (reason >= 0)
		return reason;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return REASON_FRAGMENT;
	/* past tot_len is link-layer padding, not ICMP or ports */
	l3_end = (void *)iph + tot_len;
	if (l4_split(c, l3_end))
		return REASON_HEADERS_SPLIT;
	if (iph->protocol == IPPROTO_ICMP) {
		__u8 *type = c->pos;

		if ((void *)(type + 1) <= c->end && (void *)(type + 1) <= l3_end &&
		    icmp_is_error(*type))
			return REASON_ICMP_ERROR;
	}

	fib.family = AF_INET;
	fib.tos = iph->tos;
	fib.l4_protocol = iph->protocol;
	parse_ports(c, l3_end, iph->protocol, &fib.sport, &fib.dport);
	fib.tot_len = tot_len;
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = iph->saddr;
	fib.ipv4_dst = iph->daddr;

	reason = fib_reason(fib_lookup_hinted(ctx, &fib, cfg->flags & IFACE_ROUTE_HINT),
			    iph->ttl);
	if (reason >= 0)
		return reason;
	reason = ipv4_source_reason(ctx, cfg, &fib, iph);
	if (reason >= 0)
		return reason;
	reason = egress_reason(ctx, cfg, fib.ifindex, true);
	if (reason >= 0)
		return reason;
	return forward(ctx, cfg, &fib, tot_len, true);
}

/* What ipv6_rcv() and ip6_forward() refuse before and besides the route. */
static __always_inline int ipv6_address_reason(const struct ipv6hdr *ip6h)
{
	const __u32 *s = ip6h->saddr.in6_u.u6_addr32;
	const __u32 *d = ip6h->daddr.in6_u.u6_addr32;
	__u8 s0 = ip6h->saddr.in6_u.u6_addr8[0], d0 = ip6h->daddr.in6_u.u6_addr8[0];

	if (s0 == 0xff)
		return REASON_MARTIAN_SRC;	/* multicast */
	if (!s[0] && !s[1] && (!s[2] || s[2] == bpf_htonl(0xffff)) &&
	    (!s[3] || s[3] == bpf_htonl(1) || s[2]))
		return REASON_MARTIAN_SRC;	/* ::, ::1, ::ffff:a.b.c.d */
	if (!d[0] && !d[1] && !d[2] && (!d[3] || d[3] == bpf_htonl(1)))
		return REASON_MARTIAN_DST;	/* ::, ::1 */
	if (d0 == 0xff)
		return REASON_MULTICAST;
	if ((s[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000) ||
	    (d[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
		return REASON_LINK_LOCAL;
	return -1;
}

static __always_inline int route_ipv6(struct xdp_md *ctx,
				      const struct iface_config *cfg,
				      struct cursor *c, bool ours)
{
	struct bpf_fib_lookup fib __attribute__((aligned(8))) = {};
	struct ipv6hdr *ip6h = parse_ipv6(c);
	void *l3_end;
	__u16 plen;
	int reason;

	if (!ip6h || ip6h->version != 6)
		return REASON_MALFORMED;
	reason = firewall_ipv6(ctx, ip6h, c->end);
	if (reason >= 0)
		return reason;
	if (!ours)
		return REASON_NOT_OUR_MAC;
	reason = steer_ipv6(ctx, cfg->slot); /* include/steer.h */
	if (reason >= 0)
		return reason;
	plen = bpf_ntohs(ip6h->payload_len);
	/* payload_len 0 is a jumbogram or an empty packet: the kernel's call;
	 * ipv6_rcv() checks the rest against the whole frame
	 */
	if (!plen || ETH_HLEN + sizeof(*ip6h) + plen > xdp_frame_len(ctx))
		return REASON_MALFORMED;
	reason = ipv6_address_reason(ip6h);
	if (reason >= 0)
		return reason;
	if (ipv6_is_extension(ip6h->nexthdr))
		return ip6h->nexthdr == IPPROTO_FRAGMENT ? REASON_FRAGMENT :
							   REASON_IPV6_EXT_HEADER;
	l3_end = c->pos + plen;	/* what follows is link-layer padding */
	if (l4_split(c, l3_end))
		return REASON_HEADERS_SPLIT;
	if (ip6h->nexthdr == IPPROTO_ICMPV6) {
		__u8 *type = c->pos;

		/* ICMPv6 types below 128 are errors */
		if ((void *)(type + 1) <= c->end && (void *)(type + 1) <= l3_end &&
		    *type < 128)
			return REASON_ICMP_ERROR;
	}
	if (!(cfg->flags & IFACE_IPV6_FORWARDING))
		return REASON_FWD_DISABLED;

	fib.family = AF_INET6;
	fib.flowinfo = *(__be32 *)ip6h & bpf_htonl(0x0fffffff);
	fib.l4_protocol = ip6h->nexthdr;
	parse_ports(c, l3_end, ip6h->nexthdr, &fib.sport, &fib.dport);
	fib.tot_len = sizeof(*ip6h) + plen;
	fib.ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_src, &ip6h->saddr, sizeof(fib.ipv6_src));
	__builtin_memcpy(fib.ipv6_dst, &ip6h->daddr, sizeof(fib.ipv6_dst));

	reason = fib_reason(fib_lookup_hinted(ctx, &fib, cfg->flags & IFACE_ROUTE_HINT),
			    ip6h->hop_limit);
	if (reason >= 0)
		return reason;
	reason = egress_reason(ctx, cfg, fib.ifindex, false);
	if (reason >= 0)
		return reason;
	return forward(ctx, cfg, &fib, sizeof(*ip6h) + plen, false);
}

static __always_inline bool mac_equal(const unsigned char *a, const __u8 *b)
{
	return ((const __u16 *)a)[0] == ((const __u16 *)b)[0] &&
	       ((const __u16 *)a)[1] == ((const __u16 *)b)[1] &&
	       ((const __u16 *)a)[2] == ((const __u16 *)b)[2];
}

/* VLAN-tagged frames belong to the kernel (its VLAN devices), but the
 * firewall must see their IP traffic too: up to two tags (802.1Q, 802.1ad).
 */
static __always_inline int route_vlan(struct xdp_md *ctx, struct cursor *c,
				      __be16 proto)
{
	proto = parse_vlans(c, proto);
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = parse_ipv4(c);

		if (iph && iph->version == 4 && iph->ihl >= 5) {
			int reason = firewall_ipv4(ctx, iph, c->end);

			if (reason >= 0)
				return reason;
		}
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = parse_ipv6(c);

		if (ip6h && ip6h->version == 6) {
			int reason = firewall_ipv6(ctx, ip6h, c->end);

			if (reason >= 0)
				return reason;
		}
	}
	return REASON_NOT_IP;
}

static __always_inline int route_frame(struct xdp_md *ctx,
				       const struct iface_config *cfg)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	struct ethhdr *eth = parse_eth(&c);
	bool ours;

	if (!eth)
		return REASON_MALFORMED;
	/* Linux routes only PACKET_HOST frames; another host's unicast (seen
	 * in promiscuous mode) it drops before any socket. Broadcast and
	 * multicast frames can still reach the router's own sockets, so they
	 * see the firewall first and then go to the kernel.
	 */
	ours = mac_equal(eth->h_dest, cfg->mac);
	if (!ours && !(eth->h_dest[0] & 1))
		return REASON_NOT_OUR_MAC;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return route_ipv4(ctx, cfg, &c, ours);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return route_ipv6(ctx, cfg, &c, ours);
	return route_vlan(ctx, &c, eth->h_proto);
}

static __always_inline const struct iface_config *iface_config(__u32 ifindex)
{
	const struct iface_config *cfg;

	if (ifindex >= IFACE_ARRAY_SIZE)
		return bpf_map_lookup_elem(&xdpr_ifaces_hi, &ifindex);
	cfg = bpf_map_lookup_elem(&xdpr_ifaces, &ifindex);
	return cfg && cfg->slot ? cfg : NULL;
}

/* Multi-buffer XDP: frames of any MTU the driver allows, in several
 * buffers. The control plane loads it with BPF_F_XDP_HAS_FRAGS (what
 * SEC("xdp.frags") would ask of libbpf) where the kernel has multi-buffer
 * XDP, single-buffer elsewhere: one program, the choice made at load.
 */
SEC("xdp")
int xdp_router(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u64 bytes = xdp_frame_len(ctx);
	const struct iface_config *cfg;
	int reason;

	cfg = iface_config(ifindex);
	if (!cfg)
		return record(UNCONFIGURED_SLOT, REASON_IFACE_UNCONFIGURED, bytes);
	reason = route_frame(ctx, cfg);
	if (capture_on()) /* xdprouter capture: include/capture.h */
		capture_frame(ctx, reason, reason_action(reason));
	return record(cfg->slot, reason, bytes);
}

char _license[] SEC("license") = "GPL";

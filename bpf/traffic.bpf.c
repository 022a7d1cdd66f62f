// SPDX-License-Identifier: GPL-2.0
/* Load sources and counting for the lab, the tests and the benchmark.
 *
 * Frames are never made by the kernel's BPF_PROG_RUN live-frames mode (some
 * platforms refuse it). Two sources instead, both driven by real frames:
 *
 * xdp_loop_a / xdp_loop_b: a closed loop. Attached on both hosts of a lab;
 * each frame of the loop that arrives is counted, written afresh from this
 * host's template (the next frame of its sequence of flows) and sent back to
 * the router with XDP_TX. A shared budget of bounces ends the loop by itself:
 * once it is spent, arriving frames retire (counted, dropped). With a few
 * hundred frames in flight the router is fed from both sides as fast as it
 * forwards, and every frame it forwards is counted once, on arrival. Two
 * clock reads, at two chosen budget values, time a window in the middle of
 * the run.
 *
 * xdp_inject: a feed. Attached to the far end of a veth pair inside the
 * sending host; a UDP GSO send into the near end arrives as up to 64
 * segments in one NAPI poll, each written afresh from the template and
 * redirected to the host's interface, so the router receives them as one
 * receive batch. Used where frames must go one way (floods that the router
 * drops) or in batches of a chosen size (the route hint's tests).
 *
 * xdp_gen_chain writes the same frames under plain BPF_PROG_RUN and hands
 * each to another XDP program (tail call): a program's cost per frame.
 *
 * xdp_sink counts and drops; xdp_pass and xdp_drop do nothing else; xdp_wire
 * hands every frame to another interface.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GEN_SLOTS);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

/* Frame number of each template's sequence, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GEN_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

/* Frames and bytes seen, per enum gen_count slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GEN_COUNTS);
	__type(key, __u32);
	__type(value, struct counter);
} gen_counts SEC(".maps");

/* Budget, window and retired frames: the closed loop's (LOOP_STATE_LOOP)
 * and the flood generator's (LOOP_STATE_FLOOD).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOOP_STATES);
	__type(key, __u32);
	__type(value, struct loop_state);
} loop_state SEC(".maps");

/* xdp_flood's outputs: its generator pair's far end (the frame goes round
 * again) and the sending host's interface (a copy leaves for the router).
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} flood_ports SEC(".maps");

/* The program xdp_gen_chain hands each written frame to (slot 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_next SEC(".maps");

/* xdp_wire: ingress ifindex -> the interface it hands frames to. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} wire_ports SEC(".maps");

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Add offsets to the source and destination, and recompute the checksum. */
static __always_inline void ipv4_vary(struct iphdr *iph, __u32 src_off,
				      __u32 dst_off)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

	iph->saddr = bpf_htonl(bpf_ntohl(iph->saddr) + src_off);
	iph->daddr = bpf_htonl(bpf_ntohl(iph->daddr) + dst_off);
	iph->check = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*iph) / 2); i++)
		sum += w[i];
	iph->check = csum_fold(sum);
}

/* Offset of frame i's address in a cycle of n, in steps of 1 << shift. */
static __always_inline __u32 gen_offset(__u32 i, __u32 n, __u32 shift)
{
	return n > 1 ? (i % n) << shift : 0;
}

#define GEN_V4_HDR (ETH_HLEN + sizeof(struct iphdr) + sizeof(struct udphdr))
#define GEN_V6_HDR (ETH_HLEN + sizeof(struct ipv6hdr) + sizeof(struct udphdr))

static __always_inline int gen_ipv4(void *data, void *data_end,
				    const struct gen_config *cfg, __u32 i)
{
	struct iphdr *iph = data + ETH_HLEN;
	struct udphdr *udp = (void *)(iph + 1);

	if ((void *)(udp + 1) > data_end)
		return -1;
	__builtin_memcpy(data, cfg->header, GEN_V4_HDR);
	if (cfg->dsts > 1 || cfg->srcs > 1)
		ipv4_vary(iph, gen_offset(i, cfg->srcs, cfg->src_shift),
			  gen_offset(i, cfg->dsts, cfg->dst_shift));
	if (cfg->flows > 1)
		udp->source = bpf_htons(bpf_ntohs(udp->source) + i % cfg->flows);
	return 0;
}

static __always_inline int gen_ipv6(void *data, void *data_end,
				    const struct gen_config *cfg, __u32 i)
{
	struct ipv6hdr *ip6h = data + ETH_HLEN;
	struct udphdr *udp = (void *)(ip6h + 1);
	__u32 *dst = &ip6h->daddr.in6_u.u6_addr32[3];
	__u32 *src = &ip6h->saddr.in6_u.u6_addr32[3];

	if ((void *)(udp + 1) > data_end)
		return -1;
	__builtin_memcpy(data, cfg->header, GEN_V6_HDR);
	if (cfg->dsts > 1)
		*dst = bpf_htonl(bpf_ntohl(*dst) +
				 gen_offset(i, cfg->dsts, cfg->dst_shift));
	if (cfg->srcs > 1)
		*src = bpf_htonl(bpf_ntohl(*src) +
				 gen_offset(i, cfg->srcs, cfg->src_shift));
	if (cfg->flows > 1)
		udp->source = bpf_htons(bpf_ntohs(udp->source) + i % cfg->flows);
	return 0;
}

/* Write the next frame of slot's sequence over this one: 0 or -1. The frame
 * must already have the template's length (the sender made it so).
 */
static __always_inline int gen_write(struct xdp_md *ctx,
				     const struct gen_config *cfg, __u32 slot)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 *seq;
	__u32 i;

	seq = bpf_map_lookup_elem(&gen_seq, &slot);
	if (!seq)
		return -1;
	i = (*seq)++;
	if (cfg->ipv6)
		return gen_ipv6(data, data_end, cfg, i);
	return gen_ipv4(data, data_end, cfg, i);
}

static __always_inline void count(struct xdp_md *ctx, __u32 slot)
{
	struct counter *c = bpf_map_lookup_elem(&gen_counts, &slot);

	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
}

/* Is this one of the loop's frames: UDP to the template's port, no
 * extension headers or IPv4 options (the loop's frames have none)? Anything
 * else (ARP, ND, the host's own traffic) is the host stack's.
 */
static __always_inline bool loop_frame(struct xdp_md *ctx,
				       const struct gen_config *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct udphdr *udp;

	if (cfg->ipv6) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		udp = (void *)(ip6h + 1);
		if ((void *)(udp + 1) > data_end)
			return false;
		if (eth->h_proto != bpf_htons(ETH_P_IPV6) ||
		    ip6h->nexthdr != IPPROTO_UDP)
			return false;
	} else {
		struct iphdr *iph = (void *)(eth + 1);

		udp = (void *)(iph + 1);
		if ((void *)(udp + 1) > data_end)
			return false;
		if (eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5 ||
		    iph->protocol != IPPROTO_UDP)
			return false;
	}
	return udp->dest == bpf_htons(cfg->dport);
}

/* Take one from st's budget: true while it lasts; false retires the frame.
 * Two clock reads in a whole run: the window's ends.
 */
static __always_inline bool budget_take(struct loop_state *st)
{
	__s64 left = __sync_fetch_and_add(&st->budget, -1);

	if (left <= 0) {
		__sync_fetch_and_add(&st->retired, 1);
		return false;
	}
	if (left == st->mark_start)
		st->t_start = bpf_ktime_get_ns();
	else if (left == st->mark_end)
		st->t_end = bpf_ktime_get_ns();
	return true;
}

/* One arrival at a loop host: bounce it back while the budget lasts. */
static __always_inline int loop_bounce(struct xdp_md *ctx, __u32 side)
{
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &side);
	__u32 key = LOOP_STATE_LOOP, slot = GEN_COUNT_SIDE_A + side;
	struct loop_state *st;

	st = bpf_map_lookup_elem(&loop_state, &key);
	if (!cfg || !st)
		return XDP_ABORTED;
	if (!loop_frame(ctx, cfg))
		return XDP_PASS;
	count(ctx, slot);
	if (!budget_take(st))
		return XDP_DROP;
	return gen_write(ctx, cfg, side) ? XDP_ABORTED : XDP_TX;
}

SEC("xdp")
int xdp_loop_a(struct xdp_md *ctx)
{
	return loop_bounce(ctx, GEN_SIDE_A);
}

SEC("xdp")
int xdp_loop_b(struct xdp_md *ctx)
{
	return loop_bounce(ctx, GEN_SIDE_B);
}

/* On the far end of the injector's veth pair: every segment that arrives
 * becomes the next frame of the sequence and leaves through cfg->ifindex.
 */
SEC("xdp")
int xdp_inject(struct xdp_md *ctx)
{
	__u32 slot = GEN_INJECT;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &slot);

	if (!cfg || gen_write(ctx, cfg, slot))
		return XDP_ABORTED;
	count(ctx, GEN_COUNT_INJECT);
	return bpf_redirect(cfg->ifindex, 0);
}

/* The flood generator, on the far end of a veth pair inside the sending
 * host: a few frames go round the pair (xdp_flood_back sends each straight
 * back), and each time one comes round it becomes the next frame of the
 * template's sequence and a devmap broadcast sends it both round again and,
 * as a copy (one page and one copy of the frame: the cheapest way to make a
 * frame here), out of the host's interface. One frame out per round while
 * the budget lasts: more would outrun the router, whose NAPI polls take
 * turns with the generator's on the one CPU, and overflow its ring.
 */
SEC("xdp")
int xdp_flood(struct xdp_md *ctx)
{
	__u32 slot = GEN_INJECT, key = LOOP_STATE_FLOOD;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &slot);
	struct loop_state *st = bpf_map_lookup_elem(&loop_state, &key);

	if (!cfg || !st)
		return XDP_ABORTED;
	if (!budget_take(st))
		return XDP_DROP;
	if (gen_write(ctx, cfg, slot))
		return XDP_ABORTED;
	count(ctx, GEN_COUNT_INJECT);
	return bpf_redirect_map(&flood_ports, 0, BPF_F_BROADCAST);
}

SEC("xdp")
int xdp_flood_back(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* Run under BPF_PROG_RUN with an interface as ingress: each frame written
 * goes to the XDP program in gen_next as if it had arrived there, so a test
 * can feed a program a sequence of frames back to back.
 */
SEC("xdp")
int xdp_gen_chain(struct xdp_md *ctx)
{
	__u32 slot = GEN_CHAIN;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &slot);

	if (!cfg || gen_write(ctx, cfg, slot))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &gen_next, 0);
	return XDP_ABORTED;
}

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	count(ctx, GEN_COUNT_SINK);
	return XDP_DROP;
}

/* On a router's interface when Linux forwards: a veth takes the frames its
 * peer sends with XDP_TX or a redirect reliably only when it has an XDP
 * program of its own, so every configuration of a benchmark has one.
 */
SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* A router that does nothing but hand each frame to its other interface
 * (no lookup, no rewrite: the loop's hosts take any frame): the loop's own
 * rate, the most any router in its place can show.
 */
SEC("xdp")
int xdp_wire(struct xdp_md *ctx)
{
	return bpf_redirect_map(&wire_ports, ctx->ingress_ifindex, XDP_PASS);
}

/* The cheapest thing XDP can do with a frame: a flood's lower bound. */
SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";

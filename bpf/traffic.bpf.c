// SPDX-License-Identifier: GPL-2.0
/* Load generation and counting for the lab and the benchmark.
 *
 * xdp_gen runs under BPF_PROG_RUN in live-frames mode on a sending host:
 * frames are recycled unreset (the router rewrote MACs and TTL in the same
 * page), so every run writes the whole header again from a template, then
 * varies source ports, destination and source addresses to make many flows
 * (the UDP checksum is left as the template has it).
 *
 * xdp_gen_chain writes the same frames and hands them to another XDP program.
 *
 * xdp_sink is attached to the receiving host: it counts and drops.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter);
} sink_count SEC(".maps");

/* The program xdp_gen_chain hands each written frame to (slot 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_next SEC(".maps");

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

/* Write the next frame of the sequence over the recycled one: 0 or -1. */
static __always_inline int gen_write(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct gen_config *cfg;
	__u32 key = 0, i;
	__u64 *seq;

	cfg = bpf_map_lookup_elem(&gen_config, &key);
	seq = bpf_map_lookup_elem(&gen_seq, &key);
	if (!cfg || !seq)
		return -1;
	i = (*seq)++;
	if (cfg->ipv6)
		return gen_ipv6(data, data_end, cfg, i);
	return gen_ipv4(data, data_end, cfg, i);
}

/* Run on a sending host: the frame leaves through its interface. */
SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	return gen_write(ctx) ? XDP_ABORTED : XDP_TX;
}

/* Run under BPF_PROG_RUN with an interface as ingress: each frame written
 * goes to the XDP program in gen_next as if it had arrived there, so a test
 * can feed a program a sequence of frames back to back.
 */
SEC("xdp")
int xdp_gen_chain(struct xdp_md *ctx)
{
	if (gen_write(ctx))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &gen_next, 0);
	return XDP_ABORTED;
}

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	struct counter *c;
	__u32 key = 0;

	c = bpf_map_lookup_elem(&sink_count, &key);
	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";

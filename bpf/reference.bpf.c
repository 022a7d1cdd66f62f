// SPDX-License-Identifier: GPL-2.0
/* The benchmark's floor: the least a bpf_fib_lookup forwarder can do (parse,
 * look up, rewrite, redirect) and nothing else, no counters, no checks
 * beyond TTL. NOT equivalent to Linux: it only measures what xdprouter's
 * extra care costs. Never attach it outside the benchmark lab.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "parsing.h"
#include "rewrite.h"

#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} ref_tx_ports SEC(".maps");

static __always_inline int ref_redirect(struct ethhdr *eth,
					struct bpf_fib_lookup *fib)
{
	rewrite_macs(eth, fib->dmac, fib->smac);
	return bpf_redirect_map(&ref_tx_ports, fib->ifindex, 0);
}

static __always_inline int ref_ipv4(struct xdp_md *ctx, struct ethhdr *eth,
				    struct cursor *c)
{
	struct bpf_fib_lookup fib = { .family = AF_INET };
	struct iphdr *iph = parse_ipv4(c);

	if (!iph || iph->ttl <= 1)
		return XDP_PASS;
	fib.tot_len = bpf_ntohs(iph->tot_len);
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = iph->saddr;
	fib.ipv4_dst = iph->daddr;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	ipv4_decrease_ttl(iph);
	return ref_redirect(eth, &fib);
}

static __always_inline int ref_ipv6(struct xdp_md *ctx, struct ethhdr *eth,
				    struct cursor *c)
{
	struct bpf_fib_lookup fib = { .family = AF_INET6 };
	struct ipv6hdr *ip6h = parse_ipv6(c);

	if (!ip6h || ip6h->hop_limit <= 1)
		return XDP_PASS;
	fib.tot_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
	fib.ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_src, &ip6h->saddr, sizeof(fib.ipv6_src));
	__builtin_memcpy(fib.ipv6_dst, &ip6h->daddr, sizeof(fib.ipv6_dst));
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	ip6h->hop_limit--;
	return ref_redirect(eth, &fib);
}

SEC("xdp")
int xdp_reference(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	struct ethhdr *eth = parse_eth(&c);

	if (!eth)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return ref_ipv4(ctx, eth, &c);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return ref_ipv6(ctx, eth, &c);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

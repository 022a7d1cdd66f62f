// SPDX-License-Identifier: GPL-2.0
/* Reads the IPv6 local table's state for the control plane, which runs it
 * with BPF_PROG_RUN in the router's namespace (the context's device is that
 * namespace's loopback) before it copies the table: the copy is then valid
 * for as long as the serial number read here stays (fib6_local.h).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"
#include "fib6_local.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fib6_probe);
} fib6_probe_out SEC(".maps");

SEC("xdp")
int xdp_fib6_probe(struct xdp_md *ctx)
{
	struct fib6_probe *out;
	__u32 zero = 0;
	int sernum = 0;

	out = bpf_map_lookup_elem(&fib6_probe_out, &zero);
	if (!out)
		return XDP_ABORTED;
	out->state = fib6_local_state(ctx, &sernum);
	out->sernum = sernum;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

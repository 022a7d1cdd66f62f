/* SPDX-License-Identifier: GPL-2.0 */
/* `xdprouter capture` (src/xdprouter/capture.py): frames the fast path saw,
 * with their verdict and reason, sent to user space through a perf buffer
 * while a capture runs and filtered here, in the kernel.
 *
 * Off (no capture): one inlined array lookup and a compare per frame.
 * (Tracing programs, fentry/fexit on xdp_router, would cost nothing at all
 * when off but are refused by kernels in lockdown and some sandboxes, so the
 * hook lives in the program.)
 */
#ifndef XDPR_CAPTURE_H
#define XDPR_CAPTURE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "abi.h" /* struct capture_config, capture_meta, CAPTURE_* */
#include "frame.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct capture_config);
} xdpr_capture SEC(".maps");

/* captured frames, per CPU (perf buffer) */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} xdpr_cap_events SEC(".maps");

/* the frame as the program leaves it, when the capture's filter takes it */
static __noinline int capture_frame(struct xdp_md *ctx, __u32 reason, __u32 verdict)
{
	__u32 zero = 0;
	struct capture_config *cfg = bpf_map_lookup_elem(&xdpr_capture, &zero);
	struct capture_meta meta = {};
	__u64 len = xdp_frame_len(ctx), caplen; /* the whole frame, fragments too */

	barrier_var(len); /* clang 14 would spill ctx->data as 32 bits: refused */
	if (!cfg || cfg->ifindex != ctx->ingress_ifindex)
		return 0;
	if (verdict > 31 || !(cfg->verdict_mask & (1u << verdict)))
		return 0;
	if (cfg->reason != CAPTURE_ANY_REASON && cfg->reason != reason)
		return 0;
	caplen = len < cfg->snaplen ? len : cfg->snaplen;
	caplen &= CAPTURE_SNAPLEN_MAX;
	meta.ktime_ns = bpf_ktime_get_ns();
	meta.ifindex = ctx->ingress_ifindex;
	meta.verdict = verdict;
	meta.reason = reason;
	meta.len = len;
	meta.caplen = caplen;
	bpf_perf_event_output(ctx, &xdpr_cap_events, BPF_F_CURRENT_CPU | (caplen << 32), &meta, sizeof(meta));
	return 0;
}

/* the per-frame check: is any capture running? */
static __always_inline bool capture_on(void)
{
	__u32 zero = 0;
	struct capture_config *cfg = bpf_map_lookup_elem(&xdpr_capture, &zero);

	return cfg && cfg->ifindex;
}

#endif

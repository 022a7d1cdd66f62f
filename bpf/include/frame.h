/* SPDX-License-Identifier: GPL-2.0 */
/* Multi-buffer frames (SEC("xdp.frags")): a jumbo frame arrives as a first
 * buffer (ctx->data .. ctx->data_end, where every header is read) and
 * fragments the program does not read. Lengths that Linux checks use the
 * whole frame's.
 */
#ifndef XDPR_FRAME_H
#define XDPR_FRAME_H

#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "parsing.h"

/* Bytes from the first buffer's start to the end of its last fragment.
 * bpf_xdp_get_buff_len() came with multi-buffer XDP (Linux 5.18); where the
 * running kernel lacks it the program is single-buffer and the first buffer
 * is the frame (the CO-RE check is resolved at load, the call never made).
 */
static __always_inline __u32 xdp_frame_len(struct xdp_md *ctx)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_xdp_get_buff_len))
		return bpf_xdp_get_buff_len(ctx);
	return ctx->data_end - ctx->data;
}

/* The bytes of layer 4 the program reads (ports, ICMP type: 8 are enough)
 * are not all in the first buffer, though the IP length (checked against the
 * whole frame) says they exist: a multi-buffer frame the kernel must take,
 * which linearises what it needs. l3_end may point past the first buffer:
 * it is compared, never read.
 */
static __always_inline bool l4_split(const struct cursor *c, const void *l3_end)
{
	return c->pos + 8 > c->end && l3_end > c->end;
}

#endif

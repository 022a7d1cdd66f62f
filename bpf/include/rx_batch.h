/* SPDX-License-Identifier: GPL-2.0 */
/* Is this frame in the same receive batch as a frame the program already
 * redirected to another device?
 *
 * A driver runs the XDP program on the frames of one NAPI poll (at most its
 * budget, 64 on veth and most drivers) and then must call xdp_do_flush(),
 * which sends the frames redirected through a devmap and empties the devmap
 * flush list (a CONFIG_DEBUG_NET kernel warns about a driver that does not:
 * xdp_do_check_flushed()). So while that list holds anything, a frame was
 * redirected through a devmap earlier in this poll, by whichever XDP program
 * runs in it. BPF_PROG_RUN in live-frames mode does the same per batch;
 * without live frames a redirect is never carried out and the list stays
 * empty. Generic (skb) XDP redirects without the list.
 *
 * The list lives in the task's bpf_net_context (Linux 6.11 and later),
 * lazily set up: only the BPF_RI_F_DEV_MAP_INIT flag says it may be read.
 * The structures below are the kernel's, cut to the fields read here; libbpf
 * relocates their offsets against the running kernel's BTF (CO-RE), and on a
 * kernel without one of those fields the answer is always "no". The flag's
 * value cannot be relocated: it is include/linux/filter.h's since 6.11.
 */
#ifndef XDPR_RX_BATCH_H
#define XDPR_RX_BATCH_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

struct list_head___xdpr {
	struct list_head___xdpr *next;
} __attribute__((preserve_access_index));

struct bpf_redirect_info___xdpr {
	__u32 kern_flags;
} __attribute__((preserve_access_index));

struct bpf_net_context___xdpr {
	struct bpf_redirect_info___xdpr ri;
	struct list_head___xdpr dev_map_flush_list;
} __attribute__((preserve_access_index));

struct task_struct___xdpr {
	struct bpf_net_context___xdpr *bpf_net_context;
} __attribute__((preserve_access_index));

/* include/linux/filter.h: dev_map_flush_list is set up */
#define XDPR_RI_F_DEV_MAP_INIT (1U << 3)

static __always_inline bool in_redirect_batch(void)
{
	struct task_struct___xdpr *task = (void *)bpf_get_current_task_btf();
	struct bpf_net_context___xdpr *net;

	if (!bpf_core_field_exists(task->bpf_net_context) ||
	    !bpf_core_field_exists(struct bpf_net_context___xdpr, ri.kern_flags) ||
	    !bpf_core_field_exists(struct bpf_net_context___xdpr, dev_map_flush_list))
		return false;
	net = task->bpf_net_context;
	if (!net || !(net->ri.kern_flags & XDPR_RI_F_DEV_MAP_INIT))
		return false;
	return net->dev_map_flush_list.next != &net->dev_map_flush_list;
}

#endif /* XDPR_RX_BATCH_H */

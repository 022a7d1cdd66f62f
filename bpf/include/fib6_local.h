/* SPDX-License-Identifier: GPL-2.0 */
/* The state of the kernel's IPv6 local table, read live from XDP.
 *
 * Without policy rules, fib6_lookup() looks a destination up in the local
 * table (the namespace's own and anycast addresses, multicast) and, when
 * nothing there matches, in the main table; bpf_fib_lookup() does both. A
 * destination that matches nothing in the local table can therefore be
 * looked up in the main table alone (BPF_FIB_LOOKUP_DIRECT), for the same
 * result and one tree walk less. The control plane copies the local table's
 * routes (xdpr_local6) together with the serial number of its root node;
 * fib6_add() renews the serial number of every node from a new route up to
 * the root (__fib6_update_sernum_upto_root(), which the kernel's own IPv6
 * route cache relies on), so while the root still carries the copied number
 * nothing was added to the table since. A route deleted since only makes
 * the copy claim more than the table holds: those destinations get the full
 * lookup, which is always right.
 *
 * The structures below are the kernel's, cut to the fields read here;
 * libbpf relocates their offsets against the running kernel's BTF (CO-RE).
 * The context is the kernel's struct xdp_buff (bpf_cast_to_kern_ctx(),
 * Linux 6.3 and later).
 */
#ifndef XDPR_FIB6_LOCAL_H
#define XDPR_FIB6_LOCAL_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

struct fib6_node___xdpr {
	int fn_sernum;
} __attribute__((preserve_access_index));

struct fib6_table___xdpr {
	struct fib6_node___xdpr tb6_root;
} __attribute__((preserve_access_index));

struct netns_ipv6___xdpr {
	bool fib6_has_custom_rules;
	struct fib6_table___xdpr *fib6_local_tbl;
} __attribute__((preserve_access_index));

struct net___xdpr {
	struct netns_ipv6___xdpr ipv6;
} __attribute__((preserve_access_index));

struct possible_net_t___xdpr {
	struct net___xdpr *net;
} __attribute__((preserve_access_index));

struct net_device___xdpr {
	struct possible_net_t___xdpr nd_net;
} __attribute__((preserve_access_index));

struct xdp_rxq_info___xdpr {
	struct net_device___xdpr *dev;
} __attribute__((preserve_access_index));

struct xdp_buff___xdpr {
	struct xdp_rxq_info___xdpr *rxq;
} __attribute__((preserve_access_index));

/* weak: on a kernel without it (before 6.3) the program still loads */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* The serial number of the receiving namespace's IPv6 local table, in
 * *sernum; or why the main table alone would not do (enum fib6_local).
 */
static __always_inline int fib6_local_state(struct xdp_md *ctx, int *sernum)
{
	struct fib6_table___xdpr *local;
	struct xdp_buff___xdpr *xdp;
	struct net___xdpr *net;

	if (!bpf_cast_to_kern_ctx ||
	    !bpf_core_field_exists(struct netns_ipv6___xdpr, fib6_has_custom_rules) ||
	    !bpf_core_field_exists(struct netns_ipv6___xdpr, fib6_local_tbl) ||
	    !bpf_core_field_exists(struct fib6_node___xdpr, fn_sernum))
		return FIB6_LOCAL_UNREADABLE;
	xdp = bpf_cast_to_kern_ctx(ctx);
	net = xdp->rxq->dev->nd_net.net;
	if (!net)
		return FIB6_LOCAL_UNREADABLE;
	/* rules (VRFs among them) choose the tables: only the kernel knows */
	if (net->ipv6.fib6_has_custom_rules)
		return FIB6_LOCAL_RULES;
	local = net->ipv6.fib6_local_tbl;
	if (!local)
		return FIB6_LOCAL_UNREADABLE;
	*sernum = local->tb6_root.fn_sernum;
	return FIB6_LOCAL_OK;
}

#endif /* XDPR_FIB6_LOCAL_H */

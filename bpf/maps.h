/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the router, one comment each. Names are shared with Python
 * (src/xdprouter/dataplane/abi.py, abi_fw.py), which finds them by name on the loaded program.
 */
#ifndef XDPR_MAPS_H
#define XDPR_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "abi.h"

/* Attached interfaces: ifindex -> MAC, sysctl snapshot and stats slot
 * (slot 0: not attached). Written by the control plane at attach, read once
 * per frame: an array, so the verifier inlines the lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IFACE_ARRAY_SIZE);
	__type(key, __u32);
	__type(value, struct iface_config);
} xdpr_ifaces SEC(".maps");

/* The same for the rare ifindex >= IFACE_ARRAY_SIZE (long-lived namespaces
 * that created many interfaces).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct iface_config);
} xdpr_ifaces_hi SEC(".maps");

/* Egress ports for XDP_REDIRECT: ifindex -> ifindex. Every attached
 * interface, so any of them can be a next hop's device.
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} xdpr_tx_ports SEC(".maps");

/* Counters per interface slot and reason, per CPU so they cost no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct iface_stats);
} xdpr_stats SEC(".maps");

/* The namespace's own IPv4 addresses: Linux drops a frame from outside that
 * claims one of them as its source (a martian), so the fast path must not
 * forward it. An open-addressing table (see ipv4_is_local()), 0 = empty.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOCAL4_SLOTS);
	__type(key, __u32);
	__type(value, __be32);
} xdpr_local4 SEC(".maps");

/* The route hint: the last successful bpf_fib_lookup() on this CPU, its
 * input and its result (see fib_lookup_hinted()).
 */
_Static_assert(sizeof(((struct fib_hint *)0)->out) == sizeof(struct bpf_fib_lookup),
	       "fib_hint.out holds a struct bpf_fib_lookup");
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fib_hint);
} xdpr_fib_hint SEC(".maps");

/* The IPv6 local table's addresses (own and anycast), copied by the control
 * plane with the table's serial number (xdpr_local6_ver): a destination
 * that is none of them, while the table is unchanged, is looked up in the
 * main table alone (bpf/include/fib6_local.h). Open addressing like
 * xdpr_local4; all zeros = empty.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOCAL6_SLOTS);
	__type(key, __u32);
	__type(value, struct local6_addr);
} xdpr_local6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct local6_state);
} xdpr_local6_ver SEC(".maps");

/* -- the firewall (bpf/include/firewall.h) ------------------------------ */

/* [0]: is any rule loaded (the one check a frame pays without rules), and
 * which of the two generations is live; also the sets' names (for the
 * control plane: a map the program does not use cannot be found again). The control plane builds a new
 * generation beside the live one and flips gen with one write.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_state);
} xdpr_fw_state SEC(".maps");

/* Per generation: number of rules and the set references to look up. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct fw_gen);
} xdpr_fw_gens SEC(".maps");

/* The rules in order, gen * FW_MAX_RULES + position. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * FW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct fw_rule);
} xdpr_fw_rules SEC(".maps");

/* Packets and bytes per rule, by the rule's stable id, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FW_MAX_IDS);
	__type(key, __u32);
	__type(value, struct counter);
} xdpr_fw_count SEC(".maps");

/* Bitmaps of rule positions, by id: what every field lookup returns.
 * Allocated on demand, so a router without rules holds none of them.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_MAX_BITMAPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct fw_bitmap);
} xdpr_fw_bitmaps SEC(".maps");

/* The same bitmaps' summary and anchor words, by id, in an array (4 MiB):
 * the first stage of a frame's classification reads only these, inlined,
 * and most frames end there.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_MAX_BITMAPS);
	__type(key, __u32);
	__type(value, struct fw_summary);
} xdpr_fw_summary SEC(".maps");

/* Source and destination prefixes of the rules: (gen, direction, family,
 * address) -> bitmap id of the rules whose prefix covers it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4 * FW_MAX_RULES + 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_lpm_key);
	__type(value, __u32);
} xdpr_fw_lpm SEC(".maps");

/* IPv4 rule prefixes by /16, (gen * 2 + direction) * FW_DIR16_SLOTS + /16
 * -> bitmap id, or FW_DIR16_TRIE where a longer prefix needs the trie.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * FW_DIR16_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} xdpr_fw_dir16 SEC(".maps");

/* Port -> bitmap id, (gen * 2 + direction) * FW_PORT_SLOTS + port; the
 * slot FW_NOPORT is for frames without ports.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * FW_PORT_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} xdpr_fw_ports SEC(".maps");

/* (gen, ingress ifindex or 0, protocol or FW_ANY_PROTO) -> bitmap id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct fw_ifproto_key);
	__type(value, __u32);
} xdpr_fw_ifproto SEC(".maps");

/* Named prefix sets: slot -> an LPM trie of the set's IPv6 prefixes (its
 * IPv4 ones are in xdpr_fw_set_pre and xdpr_fw_setleaf) the control plane
 * creates, fills (batch updates) and swaps in whole, so a set changes
 * atomically.
 */
struct fw_set_trie {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_lpm_key);
	__type(value, __u8);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, FW_MAX_SETS);
	__type(key, __u32);
	__array(values, struct fw_set_trie);
} xdpr_fw_sets SEC(".maps");

/* The pre-filter: per generation, FW_PRE_GEN_WORDS words of presence
 * bitmaps (source and destination /24s and IPv6 /32 hashes, ports, protocols)
 * of the values some rule is anchored on. A frame with no bit set can match
 * no rule but its interface's policy: it costs these reads and nothing else.
 * Mappable: the control plane writes a generation's 8 MiB in one copy.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * FW_PRE_GEN_WORDS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} xdpr_fw_pre SEC(".maps");

/* Each set's own presence bitmap (its /24s, its IPv6 /32 hashes), swapped in
 * with the set: rules anchored on a set are candidates only where it has
 * prefixes.
 */
struct fw_set_pre_words {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_SET_PRE_WORDS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, FW_MAX_SETS);
	__type(key, __u32);
	__array(values, struct fw_set_pre_words);
} xdpr_fw_set_pre SEC(".maps");

/* Each set's IPv4 /24s that it covers only in part (prefixes longer than
 * /24): /24 -> a bit per address, swapped in with the set. A hash fills a
 * million entries in a fraction of the time an LPM trie takes.
 */
struct fw_set_leaf_hash {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);	/* each set's is sized to its leaves, preallocated: filled twice as fast */
	__uint(key_size, sizeof(__u32));
	/* a size, not a type: an inner map's value type reaches BTF only as a
	 * forward declaration, which libbpf cannot size
	 */
	__uint(value_size, sizeof(struct fw_set_leaf));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, FW_MAX_SETS);
	__type(key, __u32);
	__array(values, struct fw_set_leaf_hash);
} xdpr_fw_setleaf SEC(".maps");

/* Drop policies: (generation, ifindex) -> the policy's rule position, for
 * frames the pre-filter rules out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * MAX_IFACES);
	__type(key, struct fw_policy_key);
	__type(value, __u32);
} xdpr_fw_policy SEC(".maps");

/* A bit per hash of a blocked source: only a source whose bit is set is
 * looked up in xdpr_fw_blocked. Set by the data plane when it blocks,
 * cleared by the control plane when blocks go.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_BLOCK_HINT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} xdpr_fw_blkhint SEC(".maps");

/* Per (limit rule, source) token buckets. LRU: a flood of spoofed sources
 * evicts old entries instead of filling the map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FW_LIMIT_ENTRIES);
	__type(key, struct fw_limit_key);
	__type(value, struct fw_limit_state);
} xdpr_fw_limits SEC(".maps");

/* Sources blocked for exceeding a limit again and again, until a time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FW_BLOCK_ENTRIES);
	__type(key, struct fw_block_key);
	__type(value, struct fw_block);
} xdpr_fw_blocked SEC(".maps");

/* -- steering rules (bpf/include/steer.h) ------------------------------- */

/* [0]: is any steering rule loaded (the one read a frame pays without
 * rules), the live generation, each generation's rule count. The control
 * plane writes the other generation's rules and count, then flips gen.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_state);
} xdpr_st_state SEC(".maps");

/* The rules in order, gen * STEER_MAX_RULES + position. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * STEER_MAX_RULES);
	__type(key, __u32);
	__type(value, struct steer_rule);
} xdpr_st_rules SEC(".maps");

/* Per rule id, per CPU: frames steered, and frames that found no target. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_MAX_IDS);
	__type(key, __u32);
	__type(value, struct steer_counter);
} xdpr_st_count SEC(".maps");

/* CPU -> its queue (struct bpf_cpumap_val: queue size, no program): a
 * frame redirected here goes up the kernel's stack on that CPU.
 */
struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, STEER_MAX_CPUS);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} xdpr_st_cpus SEC(".maps");

/* (interface stats slot * STEER_XSK_QUEUES + rx queue) -> AF_XDP socket:
 * the kernel delivers a frame only to a socket bound to the frame's own
 * device and queue, so the key names both.
 */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, STEER_XSK_ENTRIES);
	__type(key, __u32);
	__type(value, __u32);
} xdpr_st_xsk SEC(".maps");

#endif

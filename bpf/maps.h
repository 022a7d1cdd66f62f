/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the router, one comment each. Names are shared with Python
 * (src/xdprouter/abi.py), which finds them by name on the loaded program.
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

#endif

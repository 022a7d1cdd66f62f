// SPDX-License-Identifier: GPL-2.0
/* xsk_reinject: gives frames back to the kernel as if they had arrived on
 * the interface they were taken from. xdprouter.xsk.Reinjector writes each
 * frame into a TAP device; this program, on the TAP's TC ingress hook,
 * redirects it to the ingress of that interface (bpf_redirect() with
 * BPF_F_INGRESS: the kernel's receive path from netif_rx(), after XDP, so a
 * native XDP program there does not see it again).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* key 0 -> the ifindex frames go to (0: none yet, frames dropped) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} reinject_target SEC(".maps");

SEC("tc")
int xsk_reinject(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&reinject_target, &key);

	if (!ifindex || !*ifindex)
		return TC_ACT_SHOT;
	return bpf_redirect(*ifindex, BPF_F_INGRESS);
}

char LICENSE[] SEC("license") = "GPL";

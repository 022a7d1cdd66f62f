// SPDX-License-Identifier: GPL-2.0
/* xsk_redirect: hands every frame of an interface to the AF_XDP socket bound
 * to the queue it arrived on (xdprouter.xsk.Redirector attaches it and fills
 * the map). A queue without a socket passes its frames to the kernel: the
 * flags argument of bpf_redirect_map() is the action when the key is empty.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* rx queue index -> AF_XDP socket (XSKMAP); 64 queues cover the lab's veths
 * and the NICs it is meant for */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsk_sockets SEC(".maps");

SEC("xdp")
int xsk_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsk_sockets, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";

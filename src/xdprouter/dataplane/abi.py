"""The data plane's ABI: the one definition of what C and Python share.

Every enum, flag and struct that crosses the kernel/user boundary is declared
here once (the firewall's in ``abi_fw.py``); ``cheader.py`` writes the C header
the BPF program includes (``build/abi.h``) from them, so the two sides cannot
drift apart; a test checks the compiled object's BTF against these ctypes layouts.
"""

from __future__ import annotations

import ctypes
import enum


class Verdict(enum.IntEnum):
    """What the program did with a frame (how the counters are grouped)."""

    FORWARDED = 0  # XDP_REDIRECT through the devmap to another interface
    TX = 1  # XDP_TX: back out of the interface it came in on
    PASSED = 2  # XDP_PASS: handed to the kernel's own stack
    DROPPED = 3  # XDP_DROP
    ABORTED = 4  # XDP_ABORTED: the program failed; visible, never silent
    STEERED = 5  # XDP_REDIRECT by a steering rule: to another CPU's kernel stack, or to an AF_XDP socket


class Reason(enum.IntEnum):
    """Why a frame got its verdict.  One counter per reason and interface."""

    # forwarded in XDP
    FORWARD = 0
    TX_SAME_IFACE = 1
    # handed to the kernel, which answers as it always does
    NOT_IP = 2  # ARP, LLDP, VLAN tags, anything that is not IPv4/IPv6
    NOT_OUR_MAC = 3  # broadcast, multicast or another host's MAC
    MALFORMED = 4  # truncated, wrong version, IHL < 5, length mismatch
    BAD_CHECKSUM = 5
    IP_OPTIONS = 6
    IPV6_EXT_HEADER = 7
    FRAGMENT = 8
    MARTIAN_SRC = 9
    MARTIAN_DST = 10
    LINK_LOCAL = 11
    TTL_EXPIRED = 12
    ICMP_ERROR = 13  # ECMP hashes ICMP errors on the inner header
    NOT_FORWARDED = 14  # no route, or a local or broadcast destination (the kernel answers)
    UNREACHABLE = 15
    PROHIBIT = 16
    FWD_DISABLED = 17
    NO_NEIGH = 18
    FRAG_NEEDED = 19
    UNSUPPORTED_ROUTE = 20  # lightweight tunnel encapsulation, or a lookup error
    EGRESS_NOT_ATTACHED = 21
    SEND_REDIRECT = 22  # egress == ingress and the kernel would send a redirect
    IFACE_UNCONFIGURED = 23
    # dropped where the kernel drops silently anyway
    BLACKHOLE = 24
    # the program could not finish a frame it had begun to change
    INTERNAL_ERROR = 25
    # handed to the kernel (continued)
    MULTICAST = 26  # IPv4/IPv6 multicast destination: multicast routing is the kernel's
    # IPv4 source fib_validate_source() may refuse: route back not unicast
    # (local, broadcast) or missing, or failing rp_filter
    UNVERIFIED_SOURCE = 27
    # the firewall (bpf/include/firewall.h), in front of everything else
    FW_DROP = 28  # first matching rule says drop
    FW_POLICY_DROP = 29  # no rule matched and the interface's default policy is drop
    FW_RATE_LIMIT = 30  # over a rate-limit rule's per-source token bucket
    FW_BLOCKED = 31  # source blocked for a while after exceeding a limit again and again
    # back out of the ingress like TX_SAME_IFACE, through the devmap: on veth,
    # XDP_TX does not wake the peer unless the peer runs an XDP program
    TX_VIA_DEVMAP = 32
    # the firewall could not classify the frame (an IPv6 extension header
    # chain longer than it walks or cut short, or more matching limit rules
    # than its step budget): it fails closed
    FW_UNPARSED = 33
    # a multi-buffer (jumbo) frame whose layer-4 header is not all in its
    # first buffer, where the program reads headers: the kernel's
    HEADERS_SPLIT = 34
    # steering rules (bpf/include/steer.h, dataplane/abi_steer.py): after the
    # firewall, before routing
    STEER_CPU = 35  # to another CPU through the cpumap: the kernel's stack runs there
    STEER_XSK = 36  # to the AF_XDP socket bound to the ingress queue

    @property
    def verdict(self) -> Verdict:
        return OUTCOMES.get(self, (Verdict.PASSED, XdpAction.PASS))[0]

    @property
    def action(self) -> XdpAction:
        """What the program returns for a frame with this reason."""
        return OUTCOMES.get(self, (Verdict.PASSED, XdpAction.PASS))[1]


class XdpAction(enum.IntEnum):
    """The program's return values (enum xdp_action, linux/bpf.h)."""

    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


# The reasons whose frames are not handed to the kernel: the one table of
# verdicts and XDP actions (build/abi.h's reason_action() is generated from it).
OUTCOMES = {
    Reason.FORWARD: (Verdict.FORWARDED, XdpAction.REDIRECT),
    Reason.TX_VIA_DEVMAP: (Verdict.TX, XdpAction.REDIRECT),
    Reason.TX_SAME_IFACE: (Verdict.TX, XdpAction.TX),
    Reason.BLACKHOLE: (Verdict.DROPPED, XdpAction.DROP),
    Reason.FW_DROP: (Verdict.DROPPED, XdpAction.DROP),
    Reason.FW_POLICY_DROP: (Verdict.DROPPED, XdpAction.DROP),
    Reason.FW_RATE_LIMIT: (Verdict.DROPPED, XdpAction.DROP),
    Reason.FW_BLOCKED: (Verdict.DROPPED, XdpAction.DROP),
    Reason.FW_UNPARSED: (Verdict.DROPPED, XdpAction.DROP),
    Reason.INTERNAL_ERROR: (Verdict.ABORTED, XdpAction.ABORTED),
    Reason.STEER_CPU: (Verdict.STEERED, XdpAction.REDIRECT),
    Reason.STEER_XSK: (Verdict.STEERED, XdpAction.REDIRECT),
}

# Transport protocols whose header starts with a 16-bit source and
# destination port: TCP, UDP, DCCP, SCTP, UDP-Lite. Firewall port rules
# match only these; build/abi.h's l4_has_ports() is generated from it.
PORT_PROTOS = (6, 17, 33, 132, 136)

REASON_MAX = len(Reason)
MAX_IFACES = 512  # stats slots; slot 0 counts frames on unconfigured interfaces
UNCONFIGURED_SLOT = 0


class IfaceFlag(enum.IntFlag):
    """Per-interface facts the control plane snapshots from sysctls at attach."""

    SEND_REDIRECTS = 1 << 0  # net.ipv4.conf.{all,IF}.send_redirects
    IPV6_FORWARDING = 1 << 1  # net.ipv6.conf.all.forwarding
    SOURCE_CHECK_FULL = 1 << 2  # rp_filter, policy rules or custom local routes: full source validation
    RP_FILTER_STRICT = 1 << 3  # net.ipv4.conf.{all,IF}.rp_filter = 1
    RP_FILTER_LOOSE = 1 << 4  # ... = 2
    TX_VIA_DEVMAP = 1 << 5  # a veth: send same-interface frames through the devmap, not XDP_TX
    ROUTE_HINT = 1 << 6  # attached in native mode: reuse a lookup within a NAPI poll (the route hint)


class IfaceConfig(ctypes.Structure):
    """Value of the ``xdpr_ifaces`` array (by ifindex) and ``xdpr_ifaces_hi``
    hash (ifindex >= IFACE_ARRAY_SIZE); slot 0 means not attached."""

    _fields_ = [
        ("mac", ctypes.c_uint8 * 6),
        ("flags", ctypes.c_uint16),
        ("slot", ctypes.c_uint32),
    ]


class Counter(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class IfaceStats(ctypes.Structure):
    """Value of the per-CPU ``xdpr_stats`` array, indexed by the iface slot."""

    _fields_ = [("reasons", Counter * REASON_MAX)]


GEN_HDR_LEN = 64  # room for eth + IPv6 + UDP (62 bytes), the largest header the generator writes


class GenSlot(enum.IntEnum):
    """The generator's templates (``gen_config``, ``gen_seq``): one per role."""

    SIDE_A = 0  # the closed loop's first host (xdp_loop_a)
    SIDE_B = 1  # the closed loop's second host (xdp_loop_b)
    INJECT = 2  # the injector (xdp_inject)
    CHAIN = 3  # BPF_PROG_RUN chained to a program under test (xdp_gen_chain)


class GenCount(enum.IntEnum):
    """Slots of ``gen_counts``: frames and bytes seen where."""

    SINK = 0  # xdp_sink
    SIDE_A = 1  # arrived at the loop's first host (= SIDE_A + GenSlot.SIDE_A)
    SIDE_B = 2  # arrived at the loop's second host
    INJECT = 3  # sent by the injector


class LoopStateSlot(enum.IntEnum):
    """Entries of ``loop_state``."""

    LOOP = 0  # the closed loop (xdp_loop_a/b)
    FLOOD = 1  # the flood generator (xdp_flood)


GEN_SLOTS = len(GenSlot)
LOOP_STATES = len(LoopStateSlot)
GEN_COUNTS = len(GenCount)


class GenConfig(ctypes.Structure):
    """A generator template (bpf/traffic.bpf.c, ``gen_config``)."""

    _fields_ = [
        ("header", ctypes.c_uint8 * GEN_HDR_LEN),  # the frame's first bytes, as built
        ("flows", ctypes.c_uint32),  # distinct source ports (1: fixed)
        ("dsts", ctypes.c_uint32),  # distinct destination addresses (1: fixed)
        ("dst_shift", ctypes.c_uint32),  # destination i is the frame's + (i << dst_shift)
        ("ipv6", ctypes.c_uint32),
        ("srcs", ctypes.c_uint32),  # distinct source addresses (0 or 1: fixed)
        ("src_shift", ctypes.c_uint32),  # source i is the frame's + (i << src_shift)
        ("ifindex", ctypes.c_uint32),  # the injector's output interface
        ("dport", ctypes.c_uint32),  # the loop's UDP destination port (host order): what a loop host bounces
    ]


CAPTURE_ANY_REASON = 0xFFFFFFFF  # CaptureConfig.reason: every reason
CAPTURE_SNAPLEN_MAX = 0xFFFF  # bytes kept of a captured frame, at most


class CaptureConfig(ctypes.Structure):
    """``xdpr_capture[0]``: what ``xdprouter capture`` wants (bpf/include/capture.h); ifindex 0: off."""

    _fields_ = [
        ("ifindex", ctypes.c_uint32),
        ("verdict_mask", ctypes.c_uint32),  # a bit per XDP action
        ("reason", ctypes.c_uint32),  # CAPTURE_ANY_REASON: any
        ("snaplen", ctypes.c_uint32),
        ("owner_pid", ctypes.c_uint32),  # the capturing process (a stale one is replaced)
    ]


class CaptureMeta(ctypes.Structure):
    """What precedes each captured frame in the perf buffer."""

    _fields_ = [
        ("ktime_ns", ctypes.c_uint64),
        ("ifindex", ctypes.c_uint32),
        ("verdict", ctypes.c_uint32),
        ("reason", ctypes.c_uint32),
        ("len", ctypes.c_uint32),  # the frame's length as it leaves the program
        ("caplen", ctypes.c_uint32),  # bytes that follow
        ("pad", ctypes.c_uint32),
    ]


CAPTURE_META_SIZE = ctypes.sizeof(CaptureMeta)


class LoopState(ctypes.Structure):
    """``loop_state[0]``: the closed loop's budget and the window it times."""

    _fields_ = [
        ("budget", ctypes.c_int64),  # bounces left; an arrival at 0 or below retires the frame
        ("mark_start", ctypes.c_int64),  # the budget value whose bounce reads t_start
        ("mark_end", ctypes.c_int64),  # ... and t_end
        ("t_start", ctypes.c_uint64),  # bpf_ktime_get_ns()
        ("t_end", ctypes.c_uint64),
        ("retired", ctypes.c_uint64),  # frames that arrived after the budget was spent
    ]


# Names of the BPF objects, shared with the C source.
PROG_NAME = "xdp_router"
MAP_IFACES = "xdpr_ifaces"
MAP_IFACES_HI = "xdpr_ifaces_hi"
MAP_TX_PORTS = "xdpr_tx_ports"
MAP_STATS = "xdpr_stats"
MAP_LOCAL4 = "xdpr_local4"
MAP_FIB_HINT = "xdpr_fib_hint"
MAP_LOCAL6 = "xdpr_local6"
MAP_LOCAL6_STATE = "xdpr_local6_ver"
ROUTER_MAPS = (
    MAP_IFACES,
    MAP_IFACES_HI,
    MAP_TX_PORTS,
    MAP_STATS,
    MAP_LOCAL4,
    MAP_FIB_HINT,
    MAP_LOCAL6,
    MAP_LOCAL6_STATE,
)
PROBE_MAP = "fib6_probe_out"  # bpf/fib6_probe.bpf.c
PROBE_PROG = "xdp_fib6_probe"

# Interfaces are looked up in an array indexed by ifindex (inlined by the
# verifier, no hashing); the rare larger ifindex goes to a hash.
IFACE_ARRAY_SIZE = 4096

# The route hint (bpf/xdp_router.bpf.c, fib_lookup_hinted()): per CPU, the
# last successful bpf_fib_lookup() is reused for frames with the same lookup
# input in the same receive batch (NAPI poll), as Linux reuses a route for the
# rest of a receive batch (ip_route_use_hint).
FIB_KEY_WORDS = 6  # bpf_fib_lookup's input (family to destination address) packed into 64-bit words


class FibHint(ctypes.Structure):
    """One per CPU (``xdpr_fib_hint``): the last successful lookup's input and result."""

    _fields_ = [
        ("key", ctypes.c_uint64 * FIB_KEY_WORDS),  # the lookup's input, packed (fib_key())
        ("out", ctypes.c_uint64 * 8),  # struct bpf_fib_lookup as the lookup left it
        ("uses", ctypes.c_uint32),  # frames that reused a result, ever
        ("ready", ctypes.c_uint32),  # 1: out is the result for key
        ("main_only", ctypes.c_uint64),  # IPv6 lookups made in the main table alone, ever (fib6_local.h)
    ]


# The namespace's IPv4 addresses, in an array used as an open-addressing
# table: address a lives at slot local4_slot(a) or one of the next
# LOCAL4_PROBES - 1 (an inlined array lookup instead of a hash map's).
LOCAL4_BITS = 10
LOCAL4_SLOTS = 1 << LOCAL4_BITS
LOCAL4_PROBES = 8
LOCAL4_MULT = 0x9E3779B1  # Fibonacci hashing


def local4_slot(addr: int) -> int:
    """The home slot of an IPv4 address (host byte order), as the C side computes it."""
    return ((addr * LOCAL4_MULT) & 0xFFFFFFFF) >> (32 - LOCAL4_BITS)


# The IPv6 local table's addresses (its /128 routes: our own and anycast
# addresses), open addressing as above, keyed by the xor of the address's
# four 32-bit words; all zeros = empty. With Local6State it tells the
# program which destinations the main table alone answers for
# (bpf/include/fib6_local.h).
LOCAL6_BITS = 10
LOCAL6_SLOTS = 1 << LOCAL6_BITS
LOCAL6_PROBES = 8


def local6_slot(addr: bytes) -> int:
    """The home slot of a 16-byte IPv6 address, as the C side computes it."""
    fold = 0
    for i in range(0, 16, 4):
        fold ^= int.from_bytes(addr[i : i + 4], "big")
    return ((fold * LOCAL4_MULT) & 0xFFFFFFFF) >> (32 - LOCAL6_BITS)


class Local6Addr(ctypes.Structure):
    """A slot of ``xdpr_local6``: an IPv6 address as it is on the wire (``ipaddress...packed``)."""

    _fields_ = [("words", ctypes.c_uint32 * 4)]


class Fib6Local(enum.IntEnum):
    """What the kernel's IPv6 FIB state allows (fib6_local_state()); 0 is
    never an answer, so a result the probe did not write is not "OK"."""

    OK = 1  # no policy rules: local table, then main
    RULES = 2  # policy rules (or a VRF) choose the tables
    UNREADABLE = 3  # a kernel without the fields read


class Local6State(ctypes.Structure):
    """``xdpr_local6_ver[0]``: is ``xdpr_local6`` the whole local table, as of which serial number."""

    _fields_ = [
        ("sernum", ctypes.c_int32),  # the local table root's fn_sernum when it was copied
        ("complete", ctypes.c_uint32),  # 1: every route of the table that a forwarded frame could match is there
        ("gen", ctypes.c_uint32),  # changed by every rewrite: a search that saw it change is not trusted
    ]


class Fib6Probe(ctypes.Structure):
    """What ``xdp_fib6_probe`` read (bpf/fib6_probe.bpf.c)."""

    _fields_ = [
        ("sernum", ctypes.c_int32),
        ("state", ctypes.c_uint32),  # Fib6Local
    ]

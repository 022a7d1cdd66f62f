"""The data plane's ABI: the one definition of what C and Python share.

Every enum, flag and struct that crosses the kernel/user boundary is declared
here once.  ``python3 src/xdprouter/abi.py`` writes the C header the BPF program
includes (``build/abi.h``), so the two sides cannot drift apart; a test checks
the compiled object's BTF against these ctypes layouts.
"""

from __future__ import annotations

import ctypes
import enum
import re
import sys


class Verdict(enum.IntEnum):
    """What the program did with a frame (how the counters are grouped)."""

    FORWARDED = 0  # XDP_REDIRECT through the devmap to another interface
    TX = 1  # XDP_TX: back out of the interface it came in on
    PASSED = 2  # XDP_PASS: handed to the kernel's own stack
    DROPPED = 3  # XDP_DROP
    ABORTED = 4  # XDP_ABORTED: the program failed; visible, never silent


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

    @property
    def verdict(self) -> Verdict:
        if self is Reason.FORWARD:
            return Verdict.FORWARDED
        if self in (Reason.TX_SAME_IFACE, Reason.TX_VIA_DEVMAP):
            return Verdict.TX
        if self in (
            Reason.BLACKHOLE,
            Reason.FW_DROP,
            Reason.FW_POLICY_DROP,
            Reason.FW_RATE_LIMIT,
            Reason.FW_BLOCKED,
            Reason.FW_UNPARSED,
        ):
            return Verdict.DROPPED
        if self is Reason.INTERNAL_ERROR:
            return Verdict.ABORTED
        return Verdict.PASSED


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


# -- the firewall (bpf/include/firewall.h, src/xdprouter/firewall.py) -------

FW_MAX_RULES = 16384  # rule positions per generation, the per-interface policies included
FW_WORDS = FW_MAX_RULES // 64  # a bitmap of rule positions, in 64-bit words
FW_SUMMARY_WORDS = FW_WORDS // 64  # one bit per non-zero word
FW_MAX_IDS = 2 * FW_MAX_RULES  # stable rule ids (counter slots): both generations' rules
FW_MAX_BITMAPS = 65536  # bitmap ids; generation g uses [g * FW_MAX_BITMAPS / 2, ...)
FW_NOPORT = 65536  # the "port" of a frame without ports
FW_ICMP_SLOT = 65537  # ICMP/ICMPv6 frames take slot FW_ICMP_SLOT + type in the source-port field
FW_PORT_SLOTS = FW_ICMP_SLOT + 256  # ports 0-65535, FW_NOPORT, then the 256 ICMP types
FW_MAX_SETS = 64  # named prefix sets (slots of the map of LPM tries)
FW_MAX_REFS = 4  # distinct (set, direction) references per generation
FW_MAX_SET_PREFIXES = 4_000_000  # a set's trie holds at most this many
FW_LIMIT_ENTRIES = 65536  # per-source rate-limit states (LRU)
FW_BLOCK_ENTRIES = 65536  # blocked sources (LRU)
FW_ANY_PROTO = 0xFFFF  # ifproto key: any protocol
FW_NAMES_IFACE = 1  # FwGen.named: some rule (or policy) names an interface
FW_NAMES_PROTO = 2  # FwGen.named: some rule names a protocol
FW_MAX_STEPS = 1024  # bound of the classifier's loop: summary words, candidate words, rules looked at
FW_EMPTY_BITMAP = FW_MAX_BITMAPS - 1  # all zeros, written once


class FwAction(enum.IntEnum):
    ALLOW = 0
    DROP = 1
    LIMIT = 2  # in profile: go on to the next matching rule; over: drop


class FwRuleFlag(enum.IntFlag):
    POLICY = 1 << 0  # an interface's default policy (the implicit last rule for it)
    PROTO = 1 << 1  # proto is set (else any protocol)
    SRC_SET = 1 << 2  # src_set names the source set (else src/src_len is a prefix)
    DST_SET = 1 << 3
    SPORT = 1 << 4  # a source port range is set (0-65535 included: ports required)
    DPORT = 1 << 5
    ICMP_TYPE = 1 << 6  # sport_lo is an ICMP / ICMPv6 type to match


class FwGen(ctypes.Structure):
    """``xdpr_fw_gens[gen]``: one generation's rule count and set references."""

    _fields_ = [
        ("nrules", ctypes.c_uint32),
        ("nrefs", ctypes.c_uint32),
        ("has_block", ctypes.c_uint32),  # some limit rule blocks: look at xdpr_fw_blocked
        ("named", ctypes.c_uint32),  # FW_NAMES_IFACE | FW_NAMES_PROTO: what some rule names (else "any" only)
        ("ref_slot", ctypes.c_uint32 * FW_MAX_REFS),  # set slot
        ("ref_dir", ctypes.c_uint32 * FW_MAX_REFS),  # 0: source, 1: destination
        ("ref_need", ctypes.c_uint32 * FW_MAX_REFS),  # bitmap: rules that need this set to match
    ]


class FwRule(ctypes.Structure):
    """``xdpr_fw_rules[gen * FW_MAX_RULES + position]``: the whole rule, so the
    control plane can read it back; the data plane reads action, id and limits."""

    _fields_ = [
        ("id", ctypes.c_uint32),  # stable: the counter slot, what `firewall delete` takes
        ("action", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("proto", ctypes.c_uint8),
        ("family", ctypes.c_uint8),  # 0 any, 4, 6
        ("src_len", ctypes.c_uint8),
        ("dst_len", ctypes.c_uint8),
        ("src_set", ctypes.c_uint8),
        ("dst_set", ctypes.c_uint8),
        ("sport_lo", ctypes.c_uint16),
        ("sport_hi", ctypes.c_uint16),
        ("dport_lo", ctypes.c_uint16),
        ("dport_hi", ctypes.c_uint16),
        ("ifindex", ctypes.c_uint32),  # 0: any interface
        ("src", ctypes.c_uint8 * 16),
        ("dst", ctypes.c_uint8 * 16),
        ("pps", ctypes.c_uint64),
        ("bps", ctypes.c_uint64),
        ("burst_pkts", ctypes.c_uint32),
        ("burst_bytes", ctypes.c_uint32),
        ("pkt_ns", ctypes.c_uint64),  # 1e9 / pps: the time one packet costs
        ("pkt_tau", ctypes.c_uint64),  # burst_pkts * pkt_ns: how far ahead the bucket may run
        ("byte_tau", ctypes.c_uint64),  # burst_bytes * 1e9 / bps
        ("block_after", ctypes.c_uint32),  # over-limit packets within a second that block (0: never)
        ("pad", ctypes.c_uint32),
        ("block_ns", ctypes.c_uint64),
    ]


class FwBitmap(ctypes.Structure):
    """``xdpr_fw_bitmaps``: a set of rule positions, which words are non-zero,
    and which words hold a rule *anchored* on this bitmap's field (firewall.py
    ``_anchors``: every rule is anchored on one field it constrains)."""

    _fields_ = [
        ("summary", ctypes.c_uint64 * FW_SUMMARY_WORDS),
        ("anchor", ctypes.c_uint64 * FW_SUMMARY_WORDS),
        ("words", ctypes.c_uint64 * FW_WORDS),
    ]


class FwSummary(ctypes.Structure):
    """``xdpr_fw_summary``: a bitmap's summary and anchor words (the first
    fields of FwBitmap), by bitmap id, in an array: a frame that no rule could
    match is told so by these alone, without the bitmaps' hash lookups."""

    _fields_ = [
        ("summary", ctypes.c_uint64 * FW_SUMMARY_WORDS),
        ("anchor", ctypes.c_uint64 * FW_SUMMARY_WORDS),
    ]


assert FwBitmap.summary.offset == FwSummary.summary.offset and FwBitmap.anchor.offset == FwSummary.anchor.offset  # type: ignore[attr-defined]


class FwLpmKey(ctypes.Structure):
    """Key of the rule tries and the set tries: tag = generation, direction,
    family (4 or 6), 0; then the address. prefixlen counts the tag's 32 bits."""

    _fields_ = [("prefixlen", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 4), ("addr", ctypes.c_uint8 * 16)]


class FwIfprotoKey(ctypes.Structure):
    _fields_ = [("gen", ctypes.c_uint32), ("ifindex", ctypes.c_uint32), ("proto", ctypes.c_uint32)]


class FwLimitKey(ctypes.Structure):
    _fields_ = [("rule_id", ctypes.c_uint32), ("family", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 16)]


class FwLimitState(ctypes.Structure):
    """Per-source bucket of a limit rule, as GCRA: a theoretical arrival time
    per unit (packets, bytes); the bucket is full when tat <= now."""

    _fields_ = [
        ("tat_pkt", ctypes.c_uint64),
        ("tat_byte", ctypes.c_uint64),
        ("window_start", ctypes.c_uint64),  # strikes count over-limit packets since this time
        ("strikes", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class FwBlockKey(ctypes.Structure):
    _fields_ = [("family", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 16)]


class FwBlock(ctypes.Structure):
    _fields_ = [("until", ctypes.c_uint64), ("rule_id", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class FwSetInfo(ctypes.Structure):
    """A set's name and size, ``xdpr_fw_state[0].sets[slot]``."""

    _fields_ = [("name", ctypes.c_uint8 * 32), ("used", ctypes.c_uint32), ("count", ctypes.c_uint32)]


class FwState(ctypes.Structure):
    """``xdpr_fw_state[0]``: is any rule loaded, which generation is live, and
    the sets' names (kept here because the program must use a map for the
    control plane to find it through the program)."""

    _fields_ = [("enabled", ctypes.c_uint32), ("gen", ctypes.c_uint32), ("sets", FwSetInfo * FW_MAX_SETS)]


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


MAP_FW_STATE = "xdpr_fw_state"
MAP_FW_GENS = "xdpr_fw_gens"
MAP_FW_RULES = "xdpr_fw_rules"
MAP_FW_COUNTERS = "xdpr_fw_count"
MAP_FW_BITMAPS = "xdpr_fw_bitmaps"
MAP_FW_SUMMARY = "xdpr_fw_summary"
MAP_FW_LPM = "xdpr_fw_lpm"
MAP_FW_PORTS = "xdpr_fw_ports"
MAP_FW_IFPROTO = "xdpr_fw_ifproto"
MAP_FW_SETS = "xdpr_fw_sets"
MAP_FW_LIMITS = "xdpr_fw_limits"
MAP_FW_BLOCKED = "xdpr_fw_blocked"
FW_MAPS = (
    MAP_FW_STATE,
    MAP_FW_GENS,
    MAP_FW_RULES,
    MAP_FW_COUNTERS,
    MAP_FW_BITMAPS,
    MAP_FW_SUMMARY,
    MAP_FW_LPM,
    MAP_FW_PORTS,
    MAP_FW_IFPROTO,
    MAP_FW_SETS,
    MAP_FW_LIMITS,
    MAP_FW_BLOCKED,
)

_C_TYPES = {
    ctypes.c_uint8: "__u8",
    ctypes.c_uint16: "__u16",
    ctypes.c_uint32: "__u32",
    ctypes.c_uint64: "__u64",
    ctypes.c_int32: "__s32",
    ctypes.c_int64: "__s64",
}


def _c_field(name: str, ctype: type) -> str:
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
        inner = ctype._type_  # type: ignore[attr-defined]
        length = ctype._length_  # type: ignore[attr-defined]
        if isinstance(inner, type) and issubclass(inner, ctypes.Structure):
            base = f"struct {_c_struct_name(inner)}"
        else:
            base = _C_TYPES[inner]
        return f"\t{base} {name}[{length}];"
    return f"\t{_C_TYPES[ctype]} {name};"


def _c_struct_name(struct: type) -> str:
    """CamelCase to the C name: IfaceConfig -> iface_config."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", struct.__name__).lower()


def c_header() -> str:
    """The C header generated from this module (build/abi.h)."""
    out = [
        "/* SPDX-License-Identifier: GPL-2.0 */",
        "/* Generated from src/xdprouter/abi.py by `python3 src/xdprouter/abi.py`. Do not edit. */",
        "#ifndef XDPR_ABI_H",
        "#define XDPR_ABI_H",
        "",
        "#include <linux/types.h>",
        "",
        "enum verdict {",
    ]
    out += [f"\tVERDICT_{v.name} = {v.value}," for v in Verdict]
    out += ["};", "", "enum reason {"]
    out += [f"\tREASON_{r.name} = {r.value},  /* {r.verdict.name.lower()} */" for r in Reason]
    out += [f"\tREASON_MAX = {REASON_MAX},", "};", "", "enum iface_flag {"]
    out += [f"\tIFACE_{f.name} = {f.value}," for f in IfaceFlag]
    out += ["};", "", f"#define MAX_IFACES {MAX_IFACES}", f"#define UNCONFIGURED_SLOT {UNCONFIGURED_SLOT}"]
    out += [f"#define IFACE_ARRAY_SIZE {IFACE_ARRAY_SIZE}", f"#define GEN_HDR_LEN {GEN_HDR_LEN}"]
    out += [f"#define GEN_SLOTS {GEN_SLOTS}", f"#define GEN_COUNTS {GEN_COUNTS}", f"#define LOOP_STATES {LOOP_STATES}"]
    out += ["enum loop_state_slot {"] + [f"\tLOOP_STATE_{s.name} = {s.value}," for s in LoopStateSlot] + ["};"]
    out += ["enum gen_slot {"] + [f"\tGEN_{s.name} = {s.value}," for s in GenSlot] + ["};"]
    out += ["enum gen_count {"] + [f"\tGEN_COUNT_{c.name} = {c.value}," for c in GenCount] + ["};"]
    out += [f"#define LOCAL4_{k} {v}" for k, v in (("BITS", LOCAL4_BITS), ("SLOTS", LOCAL4_SLOTS))]
    out += [f"#define LOCAL4_PROBES {LOCAL4_PROBES}", f"#define LOCAL4_MULT {LOCAL4_MULT:#x}u"]
    out += [f"#define LOCAL6_{k} {v}" for k, v in (("BITS", LOCAL6_BITS), ("SLOTS", LOCAL6_SLOTS))]
    out += [f"#define LOCAL6_PROBES {LOCAL6_PROBES}"]
    out += [f"#define FIB_KEY_WORDS {FIB_KEY_WORDS}", ""]
    out += ["enum fib6_local {"] + [f"\tFIB6_LOCAL_{f.name} = {f.value}," for f in Fib6Local] + ["};", ""]
    for name in (
        "FW_MAX_RULES FW_WORDS FW_SUMMARY_WORDS FW_MAX_IDS FW_MAX_BITMAPS FW_PORT_SLOTS FW_NOPORT FW_MAX_SETS "
        "FW_MAX_REFS FW_MAX_SET_PREFIXES FW_LIMIT_ENTRIES FW_BLOCK_ENTRIES FW_ANY_PROTO FW_MAX_STEPS FW_EMPTY_BITMAP "
        "FW_NAMES_IFACE FW_NAMES_PROTO FW_ICMP_SLOT"
    ).split():
        out.append(f"#define {name} {globals()[name]}")
    out += ["", "enum fw_action {"]
    out += [f"\tFW_{a.name} = {a.value}," for a in FwAction]
    out += ["};", "", "enum fw_rule_flag {"]
    out += [f"\tFW_RULE_{f.name} = {f.value}," for f in FwRuleFlag]
    out += ["};", ""]
    structs = (
        IfaceConfig,
        Counter,
        IfaceStats,
        GenConfig,
        LoopState,
        FwSetInfo,
        FwState,
        FwGen,
        FwRule,
        FwBitmap,
        FwSummary,
        FwLpmKey,
    )
    structs += (
        FwIfprotoKey,
        FwLimitKey,
        FwLimitState,
        FwBlockKey,
        FwBlock,
        FibHint,
        Local6Addr,
        Local6State,
        Fib6Probe,
    )
    for struct in structs:
        out.append(f"struct {_c_struct_name(struct)} {{")
        out += [_c_field(name, ctype) for name, ctype in struct._fields_]  # type: ignore[misc]
        out += ["};", f'_Static_assert(sizeof(struct {_c_struct_name(struct)}) == {ctypes.sizeof(struct)}, "abi");', ""]
    out += ["#endif", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(c_header())

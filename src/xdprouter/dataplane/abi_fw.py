"""The firewall's share of the data plane's ABI: limits, rule and table structs, map names (bpf/include/firewall.h)."""

from __future__ import annotations

import ctypes
import enum

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
FW_NAMES_SRC = 4  # FwGen.named: some rule names a source prefix (not a set)
FW_NAMES_DST = 8
FW_NAMES_SPORT = 16  # a source port range or an ICMP type
FW_NAMES_DPORT = 32
FW_MAX_STEPS = 1024  # bound of the classifier's loop: summary words, candidate words, rules looked at
FW_EMPTY_BITMAP = FW_MAX_BITMAPS - 1  # all zeros, written once
# IPv4 rule prefixes, first level (xdpr_fw_dir16): per generation and
# direction, the bitmap id of each /16 that no rule prefix longer than /16
# falls in (one array read instead of the trie's walk), else FW_DIR16_TRIE
FW_DIR16_SLOTS = 1 << 16
FW_DIR16_TRIE = 0xFFFFFFFE

# The pre-filter (xdpr_fw_pre): per generation, presence bitmaps of the
# values that some rule is anchored on (firewall/prefilter.py). A frame with
# no bit set in any of them can match no rule but a policy. IPv4 addresses
# by their /24 (exact); IPv6 addresses by a hash of their /32. Each address
# bitmap has a coarse one in front (a bit per 2^FW_PRE_*_COARSE_SHIFT of its
# bits, 8 KiB, the IPv4 /16s): most frames stop there, in two hot pages,
# instead of a random page of the 2 MiB fine bitmap (a TLB miss in a VM).
FW_PRE_V4_BITS = 24
FW_PRE_V6_BITS = 21  # the hash's width
FW_PRE_V6_MULT = 0x9E3779B1  # bit = (top 32 bits * FW_PRE_V6_MULT mod 2^32) >> (32 - FW_PRE_V6_BITS)
FW_PRE_COARSE_BITS = 16
FW_PRE_V4_COARSE_SHIFT = FW_PRE_V4_BITS - FW_PRE_COARSE_BITS
FW_PRE_V6_COARSE_SHIFT = FW_PRE_V6_BITS - FW_PRE_COARSE_BITS
FW_PRE_COARSE_WORDS = 1 << (FW_PRE_COARSE_BITS - 6)
FW_PRE_V4_WORDS = 1 << (FW_PRE_V4_BITS - 6)
FW_PRE_V6_WORDS = 1 << (FW_PRE_V6_BITS - 6)
FW_PRE_PORT_WORDS = (FW_PORT_SLOTS + 63) // 64
FW_PRE_PROTO_WORDS = 4
# word offsets of the regions in one generation: the small ones first
FW_PRE_SRC4C = 0
FW_PRE_DST4C = FW_PRE_SRC4C + FW_PRE_COARSE_WORDS
FW_PRE_SRC6C = FW_PRE_DST4C + FW_PRE_COARSE_WORDS
FW_PRE_DST6C = FW_PRE_SRC6C + FW_PRE_COARSE_WORDS
FW_PRE_SPORT = FW_PRE_DST6C + FW_PRE_COARSE_WORDS
FW_PRE_DPORT = FW_PRE_SPORT + FW_PRE_PORT_WORDS
FW_PRE_PROTO = FW_PRE_DPORT + FW_PRE_PORT_WORDS
FW_PRE_SRC4 = FW_PRE_PROTO + FW_PRE_PROTO_WORDS
FW_PRE_DST4 = FW_PRE_SRC4 + FW_PRE_V4_WORDS
FW_PRE_SRC6 = FW_PRE_DST4 + FW_PRE_V4_WORDS
FW_PRE_DST6 = FW_PRE_SRC6 + FW_PRE_V6_WORDS
FW_PRE_GEN_WORDS = FW_PRE_DST6 + FW_PRE_V6_WORDS
# a set's own presence bitmaps (xdpr_fw_set_pre): IPv4 coarse, IPv6 coarse,
# IPv4 /24s, IPv6 /32 hashes it touches. Which addresses it holds: its IPv4
# prefixes in its leaves (xdpr_fw_setleaf), its IPv6 ones in its trie (xdpr_fw_sets).
FW_SET_PRE_V4C = 0
FW_SET_PRE_V6C = FW_PRE_COARSE_WORDS
FW_SET_PRE_V4 = 2 * FW_PRE_COARSE_WORDS
FW_SET_PRE_V6 = FW_SET_PRE_V4 + FW_PRE_V4_WORDS
FW_SET_PRE_WORDS = FW_SET_PRE_V6 + FW_PRE_V6_WORDS
# a set's leaves, keyed by an IPv4 /24 (a bit per address it holds there),
# or FW_SET_LEAF_16 | a /16 it holds whole (so a /8 takes 256 keys, not 65536)
FW_SET_LEAF_16 = 1 << 31
FW_SET_LEAF_BYTES = 32  # a leaf: the 256 addresses of an IPv4 /24, a bit each
# sources blocked by limit rules, by a hash of the address: a set bit means
# "look in xdpr_fw_blocked" (set by the data plane, cleared by the control
# plane); 8 KiB, so it stays in cache
FW_BLOCK_HINT_BITS = 16
FW_BLOCK_HINT_WORDS = 1 << (FW_BLOCK_HINT_BITS - 6)


class FwPre(enum.IntFlag):
    """FwGen.pre: which presence bitmaps hold anchors (the others are not read)."""

    SRC4 = 1 << 0
    DST4 = 1 << 1
    SRC6 = 1 << 2
    DST6 = 1 << 3
    SPORT = 1 << 4
    DPORT = 1 << 5
    PROTO = 1 << 6
    ALL = 1 << 7  # a rule anchored on nothing the pre-filter holds: every frame is a candidate


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
        ("named", ctypes.c_uint32),  # FW_NAMES_*: the fields some rule names; the others are not looked up
        ("ref_slot", ctypes.c_uint32 * FW_MAX_REFS),  # set slot
        ("ref_dir", ctypes.c_uint32 * FW_MAX_REFS),  # 0: source, 1: destination
        ("ref_need", ctypes.c_uint32 * FW_MAX_REFS),  # bitmap: rules that need this set to match
        ("pre", ctypes.c_uint32),  # FwPre: the presence bitmaps to read
        ("ref_anchor", ctypes.c_uint32),  # bit i: some rule is anchored on reference i (read the set's presence)
        ("has_policy", ctypes.c_uint32),  # some interface's policy is drop: look it up for a frame no rule can match
        ("all_id", ctypes.c_uint32),  # bitmap of every position, anchors of the fields no rule names: their bitmap
        ("nbitmaps", ctypes.c_uint32),  # bitmap ids the generation uses, from its base (for the purge)
        ("pad", ctypes.c_uint32),
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
    and which words hold a rule *anchored* on this bitmap's field (firewall/compiler.py
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


class FwSetLeaf(ctypes.Structure):
    """``xdpr_fw_setleaf`` values: the addresses of an IPv4 /24 a set covers in part, a bit each."""

    _fields_ = [("bits", ctypes.c_uint8 * FW_SET_LEAF_BYTES)]


class FwPolicyKey(ctypes.Structure):
    """``xdpr_fw_policy``: (generation, ifindex) -> position of that interface's drop policy."""

    _fields_ = [("gen", ctypes.c_uint32), ("ifindex", ctypes.c_uint32)]


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
MAP_FW_PRE = "xdpr_fw_pre"
MAP_FW_DIR16 = "xdpr_fw_dir16"
MAP_FW_SET_PRE = "xdpr_fw_set_pre"
MAP_FW_SET_LEAVES = "xdpr_fw_setleaf"
MAP_FW_BLOCK_HINT = "xdpr_fw_blkhint"
MAP_FW_POLICY = "xdpr_fw_policy"
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
    MAP_FW_PRE,
    MAP_FW_DIR16,
    MAP_FW_SET_PRE,
    MAP_FW_SET_LEAVES,
    MAP_FW_BLOCK_HINT,
    MAP_FW_POLICY,
)

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

    @property
    def verdict(self) -> Verdict:
        if self is Reason.FORWARD:
            return Verdict.FORWARDED
        if self is Reason.TX_SAME_IFACE:
            return Verdict.TX
        if self is Reason.BLACKHOLE:
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


class GenConfig(ctypes.Structure):
    """The live-frames generator's template (bpf/traffic.bpf.c, ``gen_config``)."""

    _fields_ = [
        ("header", ctypes.c_uint8 * GEN_HDR_LEN),  # the frame's first bytes, as built
        ("flows", ctypes.c_uint32),  # distinct source ports (1: fixed)
        ("dsts", ctypes.c_uint32),  # distinct destination addresses (1: fixed)
        ("dst_shift", ctypes.c_uint32),  # destination i is the frame's + (i << dst_shift)
        ("ipv6", ctypes.c_uint32),
    ]


# Names of the BPF objects, shared with the C source.
PROG_NAME = "xdp_router"
MAP_IFACES = "xdpr_ifaces"
MAP_IFACES_HI = "xdpr_ifaces_hi"
MAP_TX_PORTS = "xdpr_tx_ports"
MAP_STATS = "xdpr_stats"
MAP_LOCAL4 = "xdpr_local4"
ROUTER_MAPS = (MAP_IFACES, MAP_IFACES_HI, MAP_TX_PORTS, MAP_STATS, MAP_LOCAL4)

# Interfaces are looked up in an array indexed by ifindex (inlined by the
# verifier, no hashing); the rare larger ifindex goes to a hash.
IFACE_ARRAY_SIZE = 4096

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


_C_TYPES = {
    ctypes.c_uint8: "__u8",
    ctypes.c_uint16: "__u16",
    ctypes.c_uint32: "__u32",
    ctypes.c_uint64: "__u64",
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
    out += [f"#define LOCAL4_{k} {v}" for k, v in (("BITS", LOCAL4_BITS), ("SLOTS", LOCAL4_SLOTS))]
    out += [f"#define LOCAL4_PROBES {LOCAL4_PROBES}", f"#define LOCAL4_MULT {LOCAL4_MULT:#x}u", ""]
    for struct in (IfaceConfig, Counter, IfaceStats, GenConfig):
        out.append(f"struct {_c_struct_name(struct)} {{")
        out += [_c_field(name, ctype) for name, ctype in struct._fields_]  # type: ignore[misc]
        out += ["};", f'_Static_assert(sizeof(struct {_c_struct_name(struct)}) == {ctypes.sizeof(struct)}, "abi");', ""]
    out += ["#endif", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(c_header())

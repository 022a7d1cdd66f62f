"""The firewall's pre-filter: presence bitmaps of the values rules are anchored on.

Every rule (the interface policies aside) is anchored on one value it names:
its source prefix, else its destination prefix, else the set it takes a
source or destination from, else its destination ports, its source ports or
ICMP type, its protocol; a rule that names none of these is anchored on
everything. A frame that a rule matches has that rule's anchor value, so a
frame none of whose values is present in the bitmaps can match no rule:
the data plane (``fw_candidate()`` in bpf/include/firewall.h) tells so from
a few array reads, and only the other frames are classified.

Addresses are kept by their IPv4 /24 (exact: 2 MiB a direction) or by a
hash of their IPv6 /32 (2^21 bits). Sets have their own bitmap, swapped in
with the set, so a set can change without recompiling the rules.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..dataplane import abi_fw as fw
from .rules import Rule, prefix_parts

_MASK32 = (1 << 32) - 1
V6_HASHED_MIN = 16  # an IPv6 prefix shorter than this sets too many /32s: anchored on everything


def v6_bit(top32: int) -> int:
    """The bit of an IPv6 address's /32 (``fw_addr_bit()`` in firewall.h)."""
    return ((top32 * fw.FW_PRE_V6_MULT) & _MASK32) >> (32 - fw.FW_PRE_V6_BITS)


def block_hash(raw: bytes) -> int:
    """A source's bit in the block hint: the XOR of its four native-order
    32-bit words (an IPv4 source padded with zeros), hashed (``fw_block_hash()``)."""
    a, b, c, d = struct.unpack("<4I", raw.ljust(16, b"\0"))
    return (((a ^ b ^ c ^ d) * fw.FW_PRE_V6_MULT) & _MASK32) >> (32 - fw.FW_BLOCK_HINT_BITS)


def set_bit(buf: bytearray, bit: int) -> None:
    buf[bit >> 3] |= 1 << (bit & 7)


def set_range(buf: bytearray, start: int, count: int) -> None:
    """Set bits [start, start + count): whole bytes with one slice assignment."""
    end = start + count
    while start < end and start & 7:
        set_bit(buf, start)
        start += 1
    whole = (end - start) >> 3
    if whole:
        buf[start >> 3 : (start >> 3) + whole] = b"\xff" * whole
        start += whole << 3
    while start < end:
        set_bit(buf, start)
        start += 1


def add_prefix(v4: bytearray, v6: bytearray, family: int, addr: int, plen: int) -> bool:
    """Mark the prefix (``addr`` an int of its family's width) in the family's
    bitmap; False for an IPv6 prefix too short to mark (anchor on everything)."""
    if family == 4:
        if plen >= fw.FW_PRE_V4_BITS:
            set_bit(v4, addr >> (32 - fw.FW_PRE_V4_BITS))
        else:
            set_range(v4, addr >> (32 - fw.FW_PRE_V4_BITS), 1 << (fw.FW_PRE_V4_BITS - plen))
        return True
    if plen < V6_HASHED_MIN:
        return False
    top = addr >> 96
    for i in range(1 << max(0, 32 - plen)):
        set_bit(v6, v6_bit(top + i))
    return True


def _bitmap(words: int) -> bytearray:
    return bytearray(words * 8)


def coarse(fine: bytes, shift: int) -> bytes:
    """The coarse bitmap of a fine one: bit j set when any of the fine bits
    [j << shift, (j + 1) << shift) is (``fw_addr_present()``)."""
    out = _bitmap(fw.FW_PRE_COARSE_WORDS)
    k = (1 << shift) >> 5  # 32-bit fine words per coarse bit
    words = memoryview(fine).cast("I").tolist()
    if k == 1:
        for j, w in enumerate(words):
            if w:
                set_bit(out, j)
    else:
        for j in range(len(words) // k):
            if any(words[j * k : (j + 1) * k]):
                set_bit(out, j)
    return bytes(out)


_FULL_LEAF = b"\xff" * fw.FW_SET_LEAF_BYTES
# a prefix of /29-/32 inside its leaf's byte: the bits of its 1-8 addresses
_BYTE_BITS = {plen: (1 << (1 << (32 - plen))) - 1 for plen in range(29, 33)}


@dataclass
class SetTables:
    """A set as the data plane holds it: presence bitmaps (FW_SET_PRE_WORDS
    words), the IPv4 leaves (a bit per address, FW_SET_LEAF_BYTES: by /24,
    keyed here by its three bytes; or by a /16 held whole) and the IPv6
    prefixes (for its trie)."""

    presence: bytes
    leaves24: dict[bytes, bytes | bytearray]
    leaves16: dict[int, bytes]
    v6: list[tuple[bytes, int]]

    @property
    def count(self) -> int:
        return len(self.leaves24) + len(self.leaves16)

    def leaf_items(self) -> tuple[bytes, bytes]:
        """Keys (little-endian __u32: a /24, or FW_SET_LEAF_16 | a /16) and
        values for one batch update of the leaves' hash."""
        keys = b"".join(k[::-1] + b"\0" for k in self.leaves24)
        keys += struct.pack(f"<{len(self.leaves16)}I", *(fw.FW_SET_LEAF_16 | j for j in self.leaves16))
        return keys, b"".join(self.leaves24.values()) + b"".join(self.leaves16.values())


def set_tables(prefixes: list[tuple[int, bytes, int]]) -> SetTables:
    """A set's tables from its (family, address, length) prefixes; a
    million of them in under a second (one pass, leaves changed in place)."""
    v4, v6 = _bitmap(fw.FW_PRE_V4_WORDS), _bitmap(fw.FW_PRE_V6_WORDS)
    leaves: dict[bytes, bytes | bytearray] = {}
    leaves16: dict[int, bytes] = {}
    v6_prefixes = []
    get = leaves.get
    for family, raw, plen in prefixes:
        if plen > 24 and family == 4:  # the bulk of a large set: inline
            key = raw[:3]
            leaf = get(key)
            if leaf is None:
                leaf = leaves[key] = bytearray(fw.FW_SET_LEAF_BYTES)
                top = int.from_bytes(key, "big")
                v4[top >> 3] |= 1 << (top & 7)
            elif leaf is _FULL_LEAF:
                continue
            host = raw[3]
            if plen >= 29:
                leaf[host >> 3] |= _BYTE_BITS[plen] << (host & 7)
            else:
                n = 1 << (29 - plen)  # whole bytes
                leaf[host >> 3 : (host >> 3) + n] = _FULL_LEAF[:n]
            continue
        addr = int.from_bytes(raw, "big")
        if family == 6:
            v6_prefixes.append((raw, plen))
            if not add_prefix(v4, v6, 6, addr, plen):
                set_range(v6, 0, fw.FW_PRE_V6_WORDS * 64)  # a very short IPv6 prefix: every /32
            continue
        add_prefix(v4, v6, 4, addr, plen)
        if plen > 16:
            for top in range(addr >> 8, (addr >> 8) + (1 << (24 - plen))):
                leaves[top.to_bytes(3, "big")] = _FULL_LEAF
        else:
            for j in range(addr >> 16, (addr >> 16) + (1 << (16 - plen))):
                leaves16[j] = _FULL_LEAF
    out = coarse(v4, fw.FW_PRE_V4_COARSE_SHIFT) + coarse(v6, fw.FW_PRE_V6_COARSE_SHIFT) + v4 + v6
    assert len(out) == fw.FW_SET_PRE_WORDS * 8
    return SetTables(bytes(out), leaves, leaves16, v6_prefixes)


def leaves_to_ranges(leaves: dict[int, bytes]) -> list[tuple[int, int]]:
    """The IPv4 address ranges (first, last) the leaves hold, merged."""
    spans = []
    for key, value in leaves.items():
        if key & fw.FW_SET_LEAF_16:
            base = (key & 0xFFFF) << 16
            spans.append((base, base + 0xFFFF))
            continue
        bits, base, host = int.from_bytes(value, "little"), key << 8, 0
        while bits:
            low = (bits & -bits).bit_length() - 1  # the next run's first address
            ones = ~(bits >> low)
            run = (ones & -ones).bit_length() - 1  # its length
            spans.append((base + host + low, base + host + low + run - 1))
            bits >>= low + run
            host += low + run
    spans.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


@dataclass
class PreFilter:
    """One generation's pre-filter: the bitmaps (FW_PRE_GEN_WORDS words),
    which of them hold anchors, and the set references rules are anchored on."""

    words: bytes = b""
    flags: fw.FwPre = fw.FwPre(0)
    ref_anchors: set[tuple[int, int]] = field(default_factory=set)  # (set slot, direction)


def anchor(r: Rule) -> str:
    """The field a rule is anchored on in the pre-filter."""
    for attr in ("src", "dst"):
        value = getattr(r, attr)
        if value and not value.startswith("@"):
            return attr
    for attr in ("src", "dst"):
        if getattr(r, attr):
            return f"{attr}_set"
    if r.dport:
        return "dport"
    if r.sport or r.icmp_type is not None:
        return "sport"
    return "proto" if r.proto is not None else "all"


def build(rules: list[Rule], set_slots: dict[str, int]) -> PreFilter:
    """The pre-filter of ``rules`` (the policies not among them)."""
    out = PreFilter()
    regions = {
        ("src", 4): _bitmap(fw.FW_PRE_V4_WORDS),
        ("dst", 4): _bitmap(fw.FW_PRE_V4_WORDS),
        ("src", 6): _bitmap(fw.FW_PRE_V6_WORDS),
        ("dst", 6): _bitmap(fw.FW_PRE_V6_WORDS),
    }
    flag = {("src", 4): fw.FwPre.SRC4, ("dst", 4): fw.FwPre.DST4, ("src", 6): fw.FwPre.SRC6, ("dst", 6): fw.FwPre.DST6}
    ports = {"sport": _bitmap(fw.FW_PRE_PORT_WORDS), "dport": _bitmap(fw.FW_PRE_PORT_WORDS)}
    protos = _bitmap(fw.FW_PRE_PROTO_WORDS)
    for r in rules:
        kind = anchor(r)
        if kind in ("src", "dst"):
            fam, addr, plen = prefix_parts(getattr(r, kind))
            if add_prefix(regions[(kind, 4)], regions[(kind, 6)], fam, addr, plen):
                out.flags |= flag[(kind, fam)]
            else:
                out.flags |= fw.FwPre.ALL
        elif kind.endswith("_set"):
            attr = kind[:3]
            out.ref_anchors.add((set_slots[getattr(r, attr)[1:]], 0 if attr == "src" else 1))
        elif kind in ("sport", "dport"):
            lo, hi = (fw.FW_ICMP_SLOT + r.icmp_type,) * 2 if r.icmp_type is not None else getattr(r, kind)
            set_range(ports[kind], lo, hi - lo + 1)
            out.flags |= fw.FwPre.SPORT if kind == "sport" else fw.FwPre.DPORT
        elif kind == "proto":
            assert r.proto is not None
            set_bit(protos, r.proto)
            out.flags |= fw.FwPre.PROTO
        else:
            out.flags |= fw.FwPre.ALL
    fine = [regions[("src", 4)], regions[("dst", 4)], regions[("src", 6)], regions[("dst", 6)]]
    shifts = [fw.FW_PRE_V4_COARSE_SHIFT] * 2 + [fw.FW_PRE_V6_COARSE_SHIFT] * 2
    out.words = b"".join(
        [coarse(f, sh) for f, sh in zip(fine, shifts, strict=True)] + [ports["sport"], ports["dport"], protos] + fine
    )
    assert len(out.words) == fw.FW_PRE_GEN_WORDS * 8
    return out

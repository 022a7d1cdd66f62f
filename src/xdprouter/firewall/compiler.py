"""The firewall's compiler: rules and policies to one generation's lookup tables, in named stages, without I/O."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from ..dataplane import abi_fw as fw
from ..errors import UsageError
from . import prefilter
from .codec import encode
from .rules import Rule, prefix_parts

GEN_BITMAPS = fw.FW_MAX_BITMAPS // 2  # bitmap ids per generation (the last id is the empty bitmap)
LPM_KEY = struct.Struct("<I4s16s")  # FwLpmKey, packed
_GONE = re.compile(r"ifindex:(\d+)")


@dataclass
class Compiled:
    """One generation's tables, as bytes ready for the maps."""

    bitmaps: dict[int, bytes] = field(default_factory=dict)  # id -> FwBitmap
    lpm: list[tuple[bytes, int]] = field(default_factory=list)  # FwLpmKey -> bitmap id
    dir16: list[list[int]] = field(default_factory=list)  # per direction, FW_DIR16_SLOTS bitmap ids
    ports: list[list[int]] = field(default_factory=list)  # [sport ids, dport ids], FW_PORT_SLOTS each
    ifproto: list[tuple[bytes, int]] = field(default_factory=list)
    rules: list[fw.FwRule] = field(default_factory=list)
    gen: fw.FwGen = field(default_factory=fw.FwGen)
    pre: prefilter.PreFilter = field(default_factory=prefilter.PreFilter)
    policies: list[tuple[int, int]] = field(default_factory=list)  # (ifindex, position) of each drop policy


def is_gone(name: str) -> bool:
    """Is ``name`` "ifindex:N", the name of a deleted interface's rule or policy?"""
    return _GONE.fullmatch(name) is not None


def ifindex_of(name: str, links: dict[str, int]) -> int | None:
    """An interface's index by name; or N for "ifindex:N", the name a rule or
    policy reads back with once its interface was deleted (it matches no
    frame while no interface has that index, and stays until deleted, so
    other edits still go through). Only an index no interface has now: 0 is
    "any interface", and a live index has a name to use."""
    if name in links:
        return links[name]
    m = _GONE.fullmatch(name)
    if not m:
        return None
    index = int(m.group(1))
    if not 0 < index < 1 << 32 or index in links.values():
        return None
    return index


def known_ifindex(name: str, links: dict[str, int]) -> int:
    index = ifindex_of(name, links)
    if index is None:
        raise UsageError(f"no interface {name!r}")
    return index


def assign_ids(
    rules: list[Rule], policies: dict[str, str], old: list[fw.FwRule], links: dict[str, int]
) -> tuple[list[int], dict[str, int], list[int]]:
    """Stable ids: a rule keeps its id, a drop policy the one it had on the
    same interface; the others get the lowest free ids. Returns the rules'
    ids in order, each drop policy's, and the ids newly taken; changes nothing."""
    old_policy = {r.ifindex: r.id for r in old if r.flags & fw.FwRuleFlag.POLICY}
    policy_ids = {}
    for iface, action in policies.items():
        index = ifindex_of(iface, links)
        if action == "drop" and index is not None and old_policy.get(index):
            policy_ids[iface] = old_policy[index]
    used = {r.id for r in rules if r.id} | set(policy_ids.values())
    free = (i for i in range(1, fw.FW_MAX_IDS) if i not in used)
    ids = [r.id or next(free) for r in rules]
    fresh = [i for r, i in zip(rules, ids, strict=True) if not r.id]
    for iface, action in policies.items():
        if action == "drop" and iface not in policy_ids:
            policy_ids[iface] = next(free)
            fresh.append(policy_ids[iface])
    return ids, policy_ids, fresh


def compile_generation(
    rules: list[Rule],
    policies: dict[str, str],
    links: dict[str, int],
    set_slots: dict[str, int],
    gen: int,
    policy_ids: dict[str, int],
) -> Compiled:
    """The tables of generation ``gen``: rules first, then each interface's
    drop policy as its implicit last rule. Raises UsageError for what the
    tables cannot hold."""
    entries = _entries(rules, policies, policy_ids)
    bm = _Bitmaps(gen)
    anchors = _anchors(entries)
    out = Compiled(
        rules=[
            encode(r, pos >= len(rules), known_ifindex(r.iface, links) if r.iface else 0, set_slots)
            for pos, r in enumerate(entries)
        ]
    )
    out.ifproto, named = _ifproto_stage(entries, links, gen, bm, anchors["ifproto"])
    for d, attr in ((0, "src"), (1, "dst")):
        lpm, dir16 = _prefix_stage(entries, attr, d, gen, bm, anchors[attr])
        out.lpm += lpm
        out.dir16.append(dir16)
    out.ports = [_port_stage(entries, attr, bm, anchors[attr]) for attr in ("sport", "dport")]
    named |= _named(entries)
    out.pre = prefilter.build(rules, set_slots)
    out.gen = _gen_stage(entries, set_slots, bm, named, out.pre)
    out.gen.all_id = _all_stage(entries, bm, anchors, named)
    out.policies = [(known_ifindex(r.iface or "", links), pos) for pos, r in enumerate(entries) if pos >= len(rules)]
    out.gen.has_policy = int(bool(out.policies))
    out.bitmaps = {i: _bitmap_bytes(bits, anchor) for (bits, anchor), i in bm.ids.items()}
    out.gen.nbitmaps = len(bm.ids)
    return out


def _entries(rules: list[Rule], policies: dict[str, str], policy_ids: dict[str, int]) -> list[Rule]:
    entries = list(rules)
    for iface, action in sorted(policies.items()):
        if action == "drop":
            entries.append(Rule(action="drop", iface=iface, id=policy_ids[iface]))
    return entries


_NONZERO = bytes([0] + [1] * 255)  # bytes.translate: a non-zero byte to 1
_ASCII01 = bytes([0x30, 0x31]) + bytes(254)  # 0 and 1 to "0" and "1"


def _summary(raw: bytes) -> int:
    """One bit per non-zero 64-bit word of a bitmap's little-endian bytes:
    bytes flagged, OR-folded to their word's first byte, taken every eighth,
    read as binary (C-speed steps; a bitmap has 256 words, a generation
    thousands of bitmaps)."""
    flags = int.from_bytes(raw.translate(_NONZERO), "little")
    folded = flags
    for shift in (8, 16, 32):
        folded |= folded >> shift
    words = folded.to_bytes(len(raw) + 8, "little")[: len(raw) : 8]
    return int(words.translate(_ASCII01)[::-1] or b"0", 2)


def _bitmap_bytes(bits: int, anchor: int) -> bytes:
    n = fw.FW_SUMMARY_WORDS * 8
    raw = bits.to_bytes(fw.FW_WORDS * 8, "little")
    return (
        _summary(raw).to_bytes(n, "little")
        + _summary(anchor.to_bytes(fw.FW_WORDS * 8, "little")).to_bytes(n, "little")
        + raw
    )


class _Bitmaps:
    def __init__(self, gen: int) -> None:
        self.base = gen * GEN_BITMAPS
        self.ids: dict[tuple[int, int], int] = {}

    def id(self, bits: int, anchored: int = 0) -> int:
        """The id of ``bits``, the rules ``anchored`` on its field marked."""
        key = (bits, bits & anchored)
        found = self.ids.get(key)
        if found is None:
            found = self.base + len(self.ids)
            if found >= self.base + GEN_BITMAPS - 1:
                raise UsageError("the rules need too many distinct lookup entries: fewer distinct prefixes or ports")
            self.ids[key] = found
        return found


def _anchors(entries: list[Rule]) -> dict[str, int]:
    """Each rule anchored on one field it constrains, the most selective first:
    source prefix, destination prefix, destination port, source port, else
    interface x protocol (which also takes the rules that constrain nothing
    but sets, or nothing at all). A rule that matches a frame is in the
    looked-up bitmap of its anchor field, so the data plane visits only the
    words some field's bitmap holds an anchored rule in: a frame that only
    wildcards match skips the words of rules that name other addresses."""
    out = dict.fromkeys(("ifproto", "src", "dst", "sport", "dport"), 0)
    for pos, r in enumerate(entries):
        if r.src and not r.src.startswith("@"):
            field_ = "src"
        elif r.dst and not r.dst.startswith("@"):
            field_ = "dst"
        elif r.dport:
            field_ = "dport"
        elif r.sport or r.icmp_type is not None:
            field_ = "sport"
        else:
            field_ = "ifproto"
        out[field_] |= 1 << pos
    return out


def _ifproto_stage(
    entries: list[Rule], links: dict[str, int], gen: int, bm: _Bitmaps, anchors: int
) -> tuple[list[tuple[bytes, int]], int]:
    """Interface x protocol: a bitmap per (ifindex or any, protocol or any)
    named by some rule; and what the rules name (FwGen.named)."""
    wild_if = wild_p = 0
    by_if: dict[int, int] = {}
    by_p: dict[int, int] = {}
    for pos, r in enumerate(entries):
        bit = 1 << pos
        if r.iface:
            index = known_ifindex(r.iface, links)
            by_if[index] = by_if.get(index, 0) | bit
        else:
            wild_if |= bit
        if r.proto is not None:
            by_p[r.proto] = by_p.get(r.proto, 0) | bit
        else:
            wild_p |= bit
    out = []
    for ifindex in [0, *by_if]:
        for proto in [fw.FW_ANY_PROTO, *by_p]:
            bits = (wild_if | by_if.get(ifindex, 0)) & (wild_p | by_p.get(proto, 0))
            key = fw.FwIfprotoKey(gen=gen, ifindex=ifindex, proto=proto)
            out.append((bytes(key), bm.id(bits, anchors)))
    named = (fw.FW_NAMES_IFACE if by_if else 0) | (fw.FW_NAMES_PROTO if by_p else 0)
    return out, named


def _prefix_stage(
    entries: list[Rule], attr: str, d: int, gen: int, bm: _Bitmaps, anchors: int
) -> tuple[list[tuple[bytes, int]], list[int]]:
    """Source (d 0) or destination (d 1) prefixes: per prefix a trie entry
    whose bitmap holds every rule whose prefix covers it, and the wildcards;
    and the IPv4 /16 table in front of the trie."""
    wild = 0
    nets: dict[int, dict[tuple[int, int], int]] = {4: {}, 6: {}}  # family -> (net int, len) -> bits
    for pos, r in enumerate(entries):
        value = getattr(r, attr)
        if not value or value.startswith("@"):
            wild |= 1 << pos
            continue
        fam, addr, plen = prefix_parts(value)
        nets[fam][(addr, plen)] = nets[fam].get((addr, plen), 0) | (1 << pos)
    out = []
    for fam, bits_of in nets.items():
        width = 32 if fam == 4 else 128
        bits_of.setdefault((0, 0), 0)
        tag = bytes((gen, d, fam, 0))
        # in address order, a prefix comes after every prefix that holds it:
        # the stack is the chain of those, each with what it covers
        chain: list[tuple[int, int, int]] = []  # (address, length, covered)
        for (addr, plen), bits in sorted(bits_of.items()):
            while chain and chain[-1][0] >> (width - chain[-1][1]) != addr >> (width - chain[-1][1]):
                chain.pop()
            covered = (chain[-1][2] if chain else wild) | bits
            chain.append((addr, plen, covered))
            key = LPM_KEY.pack(32 + plen, tag, addr.to_bytes(width // 8, "big").ljust(16, b"\0"))
            out.append((key, bm.id(covered, anchors)))
    return out, _dir16_stage(nets[4], wild, bm, anchors)


DIR16_WORK = 1 << 21  # /16 entries painted by short prefixes, past which the trie alone serves


def _dir16_stage(bits_of: dict[tuple[int, int], int], wild: int, bm: _Bitmaps, anchors: int) -> list[int]:
    """Each IPv4 /16's bitmap id: the wildcards and every prefix of /16 or
    shorter that holds it (what the trie's longest match there gives), or
    FW_DIR16_TRIE where a longer prefix falls in it."""
    short = sorted((plen, addr, bits) for (addr, plen), bits in bits_of.items() if plen <= 16 and bits)
    if sum(1 << (16 - plen) for plen, _, _ in short) > DIR16_WORK:
        return [fw.FW_DIR16_TRIE] * fw.FW_DIR16_SLOTS
    covered = [wild] * fw.FW_DIR16_SLOTS
    for plen, addr, bits in short:
        first = addr >> 16
        for j in range(first, first + (1 << (16 - plen))):
            covered[j] |= bits
    memo: dict[int, int] = {}
    out = []
    for value in covered:
        found = memo.get(value)
        if found is None:
            found = memo[value] = bm.id(value, anchors)
        out.append(found)
    for addr, plen in bits_of:
        if plen > 16:
            out[addr >> 16] = fw.FW_DIR16_TRIE
    return out


def _port_stage(entries: list[Rule], attr: str, bm: _Bitmaps, anchors: int) -> list[int]:
    """Source or destination ports: a bitmap id per port slot, from the
    elementary intervals of every range (ICMP types in slots of their own)."""
    wild = 0
    starts: dict[int, int] = {}
    for pos, r in enumerate(entries):
        rng = getattr(r, attr)
        if attr == "sport" and r.icmp_type is not None:  # the ICMP types' own slots
            rng = (fw.FW_ICMP_SLOT + r.icmp_type,) * 2
        if rng is None:
            wild |= 1 << pos
            continue
        starts[rng[0]] = starts.get(rng[0], 0) ^ (1 << pos)
        starts[rng[1] + 1] = starts.get(rng[1] + 1, 0) ^ (1 << pos)
    ids = [0] * fw.FW_PORT_SLOTS
    active = 0
    points = sorted(set(starts) | {0, fw.FW_NOPORT, fw.FW_ICMP_SLOT, fw.FW_PORT_SLOTS})
    for a, b in zip(points, points[1:], strict=False):
        active ^= starts.get(a, 0)
        ids[a:b] = [bm.id(wild | active, anchors)] * (b - a)
    ids[fw.FW_NOPORT] = bm.id(wild, anchors)
    return ids


def _named(entries: list[Rule]) -> int:
    """The prefix and port fields some rule names (FwGen.named): the others are not looked up."""
    named = 0
    if any(r.src and not r.src.startswith("@") for r in entries):
        named |= fw.FW_NAMES_SRC
    if any(r.dst and not r.dst.startswith("@") for r in entries):
        named |= fw.FW_NAMES_DST
    if any(r.sport or r.icmp_type is not None for r in entries):
        named |= fw.FW_NAMES_SPORT
    if any(r.dport for r in entries):
        named |= fw.FW_NAMES_DPORT
    return named


_FIELD_NAMES = {
    "ifproto": fw.FW_NAMES_IFACE | fw.FW_NAMES_PROTO,
    "src": fw.FW_NAMES_SRC,
    "dst": fw.FW_NAMES_DST,
    "sport": fw.FW_NAMES_SPORT,
    "dport": fw.FW_NAMES_DPORT,
}


def _all_stage(entries: list[Rule], bm: _Bitmaps, anchors: dict[str, int], named: int) -> int:
    """The bitmap of every position, which stands for each field no rule
    names; it carries those fields' anchors (rules naming only sets, or nothing)."""
    wild = 0
    for attr, flags in _FIELD_NAMES.items():
        if not named & flags:
            wild |= anchors[attr]
    return bm.id((1 << len(entries)) - 1, wild)


def _gen_stage(
    entries: list[Rule], set_slots: dict[str, int], bm: _Bitmaps, named: int, pre: prefilter.PreFilter
) -> fw.FwGen:
    """The generation's header: rule count, and the rules that need each
    (set, direction) to match."""
    refs: dict[tuple[int, int], int] = {}
    for pos, r in enumerate(entries):
        for d, value in ((0, r.src), (1, r.dst)):
            if value and value.startswith("@"):
                k = (set_slots[value[1:]], d)
                refs[k] = refs.get(k, 0) | (1 << pos)
    if len(refs) > fw.FW_MAX_REFS:
        raise UsageError(f"rules reference {len(refs)} (set, direction) pairs, at most {fw.FW_MAX_REFS}")
    has_block = int(any(r.block_after for r in entries))
    g = fw.FwGen(nrules=len(entries), nrefs=len(refs), has_block=has_block, named=named, pre=pre.flags)
    for i, ((slot, d), bits) in enumerate(refs.items()):
        g.ref_slot[i] = slot
        g.ref_dir[i] = d
        g.ref_need[i] = bm.id(bits)
        if (slot, d) in pre.ref_anchors:
            g.ref_anchor |= 1 << i
    return g

"""The firewall's tables in the program's maps: read, write a generation, flip, purge; sets, limits, blocks."""

from __future__ import annotations

import copy
import ipaddress
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..dataplane import abi_fw as fw
from ..dataplane import bpf, newmaps
from ..dataplane.abi import Counter
from ..dataplane.instance import Instance
from ..errors import UsageError
from . import prefilter
from .codec import decode
from .compiler import GEN_BITMAPS, LPM_KEY, Compiled, assign_ids, compile_generation, ifindex_of
from .rules import Rule

SET_NAME_LEN = 31


def _set_key(family: int, raw: bytes, plen: int) -> bytes:
    return LPM_KEY.pack(32 + plen, bytes((0, 0, family, 0)), raw.ljust(16, b"\0"))


def _pack_u32(values: Iterable[int]) -> bytes:
    values = list(values)
    return struct.pack(f"<{len(values)}I", *values)


def _with_id(rule: Rule, rule_id: int) -> Rule:
    """A copy of ``rule`` numbered ``rule_id`` (a shallow copy: cheaper than dataclasses.replace)."""
    out = copy.copy(rule)
    out.id = rule_id
    return out


class Tables:
    """The firewall maps of one attached program, and the interfaces as
    they were when it was opened (read once per operation)."""

    def __init__(self, inst: Instance) -> None:
        inst.require(fw.FW_MAPS, "firewall")
        self.maps = inst.maps
        self.links = {link.name: link.index for link in inst.links}
        self.names = {link.index: link.name for link in inst.links}

    # -- reading ---------------------------------------------------------

    def state(self) -> fw.FwState:
        return self.maps[fw.MAP_FW_STATE].lookup_as(0, fw.FwState) or fw.FwState()

    def gen_config(self, gen: int) -> fw.FwGen:
        return self.maps[fw.MAP_FW_GENS].lookup_as(gen, fw.FwGen) or fw.FwGen()

    def _raw_rules(self) -> list[fw.FwRule]:
        st = self.state()
        if not st.enabled:
            return []
        g = self.gen_config(st.gen)
        m = self.maps[fw.MAP_FW_RULES]
        out = []
        for pos in range(g.nrules):
            rule = m.lookup_as(st.gen * fw.FW_MAX_RULES + pos, fw.FwRule)
            assert rule is not None
            out.append(rule)
        return out

    def sets(self) -> dict[str, tuple[int, int]]:
        """name -> (slot, prefixes)."""
        out = {}
        for slot, info in enumerate(self.state().sets):
            if info.used:
                out[bytes(info.name).rstrip(b"\0").decode()] = (slot, info.count)
        return out

    def _name(self, ifindex: int) -> str:
        return self.names.get(ifindex, f"ifindex:{ifindex}")

    def read(self) -> tuple[list[Rule], dict[str, str]]:
        slots = {slot: name for name, (slot, _) in self.sets().items()}
        rules, policies = [], {}
        for r in self._raw_rules():
            if r.flags & fw.FwRuleFlag.POLICY:
                policies[self._name(r.ifindex)] = "drop"
                continue
            rules.append(decode(r, self.names, slots))
        return rules, policies

    def policy_ids(self) -> dict[str, int]:
        return {self._name(r.ifindex): r.id for r in self._raw_rules() if r.flags & fw.FwRuleFlag.POLICY}

    def counter(self, rule_id: int) -> tuple[int, int]:
        per_cpu = self.maps[fw.MAP_FW_COUNTERS].lookup_per_cpu(rule_id, Counter)
        return sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu)

    # -- sets --------------------------------------------------------------

    def load_set(self, name: str, prefixes: list[tuple[int, bytes, int]]) -> float:
        if not name or len(name.encode()) > SET_NAME_LEN or "@" in name or "/" in name:
            raise UsageError(f"bad set name {name!r} (1-{SET_NAME_LEN} bytes, no @ or /)")
        if len(prefixes) > fw.FW_MAX_SET_PREFIXES:
            raise UsageError(f"set {name!r}: {len(prefixes)} prefixes, at most {fw.FW_MAX_SET_PREFIXES}")
        start = time.perf_counter()
        existing = self.sets()
        if name in existing:
            slot = existing[name][0]
        else:
            free = set(range(fw.FW_MAX_SETS)) - {s for s, _ in existing.values()}
            if not free:
                raise UsageError(f"too many sets (at most {fw.FW_MAX_SETS})")
            slot = min(free)
        tables = prefilter.set_tables(prefixes)
        maps = self._new_set_maps(slot, tables)
        try:
            # Each of the set's maps goes in with one pointer write. The IPv4
            # addresses are all in the leaves, the IPv6 ones all in the trie:
            # an address sees the old set or the new one, never a half-filled
            # one. The presence bitmaps only rule frames out: with the new
            # bitmaps and the old leaves, a frame they rule out is not in the
            # new set, and one they let through meets the old leaves.
            for name_, m in zip((fw.MAP_FW_SET_PRE, fw.MAP_FW_SET_LEAVES, fw.MAP_FW_SETS), maps, strict=True):
                self.maps[name_].update(slot, m.fd)
        finally:
            for m in maps:
                m.close()
        count = len(prefixes)
        st = self.state()
        st.sets[slot] = fw.FwSetInfo(used=1, count=count)
        st.sets[slot].name[: len(name.encode())] = list(name.encode())
        self.maps[fw.MAP_FW_STATE].update(0, st)
        return time.perf_counter() - start

    @staticmethod
    def _new_set_maps(slot: int, tables: prefilter.SetTables) -> tuple[bpf.Map, bpf.Map, bpf.Map]:
        """A set's presence bitmaps, IPv4 leaves and IPv6 trie, filled."""
        presence = newmaps.create_mmapable_array(f"xdpr_setpre{slot}", 8, fw.FW_SET_PRE_WORDS)
        leaves = trie = None
        try:
            with newmaps.mapped(presence) as mm:
                mm[: len(tables.presence)] = tables.presence
            leaves = newmaps.create_hash(f"xdpr_setleaf{slot}", 4, fw.FW_SET_LEAF_BYTES, max(1, tables.count))
            if tables.count:
                leaves.update_batch(*tables.leaf_items(), tables.count)
            trie = newmaps.create_lpm_trie(f"xdpr_set{slot}", LPM_KEY.size, 1, fw.FW_MAX_SET_PREFIXES)
            if tables.v6:
                keys = b"".join(_set_key(6, raw, plen) for raw, plen in tables.v6)
                trie.update_batch(keys, b"\1" * len(tables.v6), len(tables.v6))
        except BaseException:
            for m in (presence, leaves, trie):
                if m is not None:
                    m.close()
            raise
        return presence, leaves, trie

    def set_prefixes(self, name: str) -> list[str]:
        existing = self.sets()
        if name not in existing:
            raise UsageError(f"unknown set {name!r}")
        slot = existing[name][0]
        inner = self._inner(fw.MAP_FW_SETS, slot)
        try:
            keys = [LPM_KEY.unpack(raw) for raw in inner.raw_keys()] if inner else []
        finally:
            if inner:
                inner.close()
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
            ipaddress.ip_network((addr, plen - 32)) for plen, _, addr in keys
        ]
        inner = self._inner(fw.MAP_FW_SET_LEAVES, slot)
        try:
            keys4 = [struct.unpack("<I", k)[0] for k in inner.raw_keys()] if inner else []
            leaves = {k: inner.lookup(k) or b"" for k in keys4} if inner else {}
        finally:
            if inner:
                inner.close()
        for lo, hi in prefilter.leaves_to_ranges(leaves):
            nets += ipaddress.summarize_address_range(ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi))
        return [str(n) for n in sorted(nets, key=lambda n: (n.version, n))]

    def _inner(self, outer: str, slot: int) -> bpf.Map | None:
        """The map in ``outer``'s slot, opened (the caller closes it)."""
        raw_id = self.maps[outer].lookup(slot)
        return bpf.Map.from_id(struct.unpack("<I", raw_id[:4])[0]) if raw_id else None

    def delete_set(self, name: str) -> None:
        existing = self.sets()
        if name not in existing:
            raise UsageError(f"unknown set {name!r}")
        slot = existing[name][0]
        st = self.state()
        st.sets[slot] = fw.FwSetInfo()
        self.maps[fw.MAP_FW_STATE].update(0, st)
        for outer in (fw.MAP_FW_SETS, fw.MAP_FW_SET_LEAVES, fw.MAP_FW_SET_PRE):
            self.maps[outer].delete(slot)

    # -- compiling and applying ---------------------------------------------

    def check(self, rules: list[Rule], policies: dict[str, str]) -> None:
        """Raise UsageError for what compile() would refuse, changing nothing."""
        if len(rules) + len(policies) > fw.FW_MAX_RULES:
            raise UsageError(f"too many rules (at most {fw.FW_MAX_RULES} with the policies)")
        for r in rules:
            if r.iface and ifindex_of(r.iface, self.links) is None:
                raise UsageError(f"no interface {r.iface!r}")
        for iface in policies:
            if ifindex_of(iface, self.links) is None:
                raise UsageError(f"no interface {iface!r}")

    def dry_run(self, rules: list[Rule], policies: dict[str, str], new_sets: Iterable[str]) -> None:
        """Compile without writing anything, the sets about to be loaded
        given the slots they would get: raises what apply() would refuse."""
        self.check(rules, policies)
        slots = {name: slot for name, (slot, _) in self.sets().items()}
        free = [i for i in range(fw.FW_MAX_SETS) if i not in slots.values()]
        for name in new_sets:
            if name not in slots:
                if not free:
                    raise UsageError(f"too many sets (at most {fw.FW_MAX_SETS})")
                slots[name] = free.pop(0)
        compile_generation(list(rules), policies, self.links, slots, 1 - self.state().gen, dict.fromkeys(policies, 0))

    def apply(self, rules: list[Rule], policies: dict[str, str]) -> None:
        """Make ``rules`` and ``policies`` the firewall: number, compile (pure:
        refusals come before anything is written), write the other
        generation, flip to it, purge the old one. The rules get their ids
        once it is done."""
        self.check(rules, policies)
        sets = self.sets()
        for r in rules:
            for ref in (r.src, r.dst):
                if ref and ref.startswith("@") and ref[1:] not in sets:
                    raise UsageError(f"unknown set {ref[1:]!r}")
        ids, policy_ids, fresh = assign_ids(rules, policies, self._raw_rules(), self.links)
        numbered = [_with_id(r, i) for r, i in zip(rules, ids, strict=True)]
        new_gen = 1 - self.state().gen
        slots = {n: s for n, (s, _) in sets.items()}
        compiled = compile_generation(numbered, policies, self.links, slots, new_gen, policy_ids)
        for rule_id in fresh:
            self.maps[fw.MAP_FW_COUNTERS].zero(rule_id)
        self._purge(new_gen)
        self._write(compiled, new_gen)
        self._flip(new_gen, enabled=bool(compiled.rules))
        self._purge(1 - new_gen)
        self._forget_limits({r.id for r in numbered if r.action == "limit"})
        self._forget_blocks({r.id for r in numbered if r.action == "limit" and r.block_after})
        for r, i in zip(rules, ids, strict=True):
            r.id = i

    def _flip(self, gen: int, enabled: bool) -> None:
        """Make generation ``gen`` the live one with one write, then wait
        until no frame can still be using the other."""
        state = self.state()
        state.enabled, state.gen = int(enabled), gen
        self.maps[fw.MAP_FW_STATE].update(0, state)
        bpf.membarrier()

    def _forget_limits(self, keep: set[int]) -> None:
        """Bucket states of limit rules that are gone (ids are reused)."""
        m = self.maps[fw.MAP_FW_LIMITS]
        for raw in list(m.raw_keys()):
            key = fw.FwLimitKey.from_buffer_copy(raw)
            if key.rule_id not in keep:
                m.delete(key)

    def _forget_blocks(self, keep: set[int]) -> None:
        """Blocks made by rules that are gone or no longer block: a block
        outlives its rule no longer than the rule itself."""
        self._lift(lambda key, addr, block: block is not None and block.rule_id not in keep)

    def _lift(self, lifted: Callable[[fw.FwBlockKey, Any, fw.FwBlock | None], bool]) -> int:
        """Delete the blocks ``lifted`` picks; when any went, rebuild the
        block hint from those left. A source the data plane blocks meanwhile
        sets its bit again (an atomic OR), so the only loss is a block made
        between the read and the write, which then waits for its next
        over-limit frame to be noticed."""
        left, gone = [], 0
        for key, addr, block in self.blocks():
            if lifted(key, addr, block):
                gone += self.maps[fw.MAP_FW_BLOCKED].delete(key)
            else:
                left.append(key)
        if gone:
            hint = bytearray(fw.FW_BLOCK_HINT_WORDS * 8)
            for key in left:
                prefilter.set_bit(hint, prefilter.block_hash(bytes(key.addr)))
            n = fw.FW_BLOCK_HINT_WORDS
            self.maps[fw.MAP_FW_BLOCK_HINT].update_batch(_pack_u32(range(n)), bytes(hint), n)
        return gone

    def blocks(self) -> list[tuple[fw.FwBlockKey, ipaddress.IPv4Address | ipaddress.IPv6Address, fw.FwBlock | None]]:
        """Every blocked source: its key, its address, its block (None if it just went)."""
        m = self.maps[fw.MAP_FW_BLOCKED]
        out = []
        for raw in list(m.raw_keys()):
            key = fw.FwBlockKey.from_buffer_copy(raw)
            addr = ipaddress.ip_address(bytes(key.addr[: 4 if key.family == 4 else 16]))
            out.append((key, addr, m.lookup_as(key, fw.FwBlock)))
        return out

    def unblock(self, sources: list[str] | None) -> int:
        """Lift the blocks of these sources (all with None); how many were lifted."""
        wanted = {ipaddress.ip_address(a) for a in sources} if sources is not None else None
        return self._lift(lambda key, addr, block: wanted is None or addr in wanted)

    def _write(self, c: Compiled, gen: int) -> None:
        bitmaps = self.maps[fw.MAP_FW_BITMAPS]
        if bitmaps.lookup(fw.FW_EMPTY_BITMAP) is None:
            bitmaps.update(fw.FW_EMPTY_BITMAP, fw.FwBitmap())
        ids = list(c.bitmaps)
        keys = struct.pack(f"<{len(ids)}I", *ids)
        bitmaps.update_batch(keys, b"".join(c.bitmaps[i] for i in ids), len(ids))
        head = len(bytes(fw.FwSummary()))  # a bitmap starts with its summary
        self.maps[fw.MAP_FW_SUMMARY].update_batch(keys, b"".join(c.bitmaps[i][:head] for i in ids), len(ids))
        lpm = self.maps[fw.MAP_FW_LPM]
        lpm.update_batch(
            b"".join(k for k, _ in c.lpm), struct.pack(f"<{len(c.lpm)}I", *(v for _, v in c.lpm)), len(c.lpm)
        )
        ifp = self.maps[fw.MAP_FW_IFPROTO]
        self._batch(ifp, c.ifproto)
        dir16 = self.maps[fw.MAP_FW_DIR16]
        n16 = fw.FW_DIR16_SLOTS
        for d in (0, 1):
            base = (gen * 2 + d) * n16
            dir16.update_batch(struct.pack(f"<{n16}I", *range(base, base + n16)), _pack_u32(c.dir16[d]), n16)
        ports = self.maps[fw.MAP_FW_PORTS]
        for d in (0, 1):
            base = (gen * 2 + d) * fw.FW_PORT_SLOTS
            keys = struct.pack(f"<{fw.FW_PORT_SLOTS}I", *range(base, base + fw.FW_PORT_SLOTS))
            ports.update_batch(keys, struct.pack(f"<{fw.FW_PORT_SLOTS}I", *c.ports[d]), fw.FW_PORT_SLOTS)
        with newmaps.mapped(self.maps[fw.MAP_FW_PRE]) as mm:
            at = gen * fw.FW_PRE_GEN_WORDS * 8
            mm[at : at + len(c.pre.words)] = c.pre.words
        for ifindex, pos in c.policies:
            self.maps[fw.MAP_FW_POLICY].update(fw.FwPolicyKey(gen=gen, ifindex=ifindex), pos)
        if c.rules:
            n = len(c.rules)
            keys = struct.pack(f"<{n}I", *range(gen * fw.FW_MAX_RULES, gen * fw.FW_MAX_RULES + n))
            self.maps[fw.MAP_FW_RULES].update_batch(keys, b"".join(bytes(r) for r in c.rules), n)
        self.maps[fw.MAP_FW_GENS].update(gen, c.gen)

    @staticmethod
    def _batch(m: bpf.Map, items: list[tuple[bytes, int]]) -> None:
        values = struct.pack(f"<{len(items)}I", *(v for _, v in items))
        m.update_batch(b"".join(k for k, _ in items), values, len(items))

    def _purge(self, gen: int) -> None:
        """Remove a generation's hash and trie entries (arrays are overwritten)."""
        lpm = self.maps[fw.MAP_FW_LPM]
        for raw in list(lpm.raw_keys()):
            if raw[4] == gen:
                lpm.delete(fw.FwLpmKey.from_buffer_copy(raw))
        for name, key_type in ((fw.MAP_FW_IFPROTO, fw.FwIfprotoKey), (fw.MAP_FW_POLICY, fw.FwPolicyKey)):
            m = self.maps[name]
            for raw in list(m.raw_keys()):
                key = key_type.from_buffer_copy(raw)
                if key.gen == gen:
                    m.delete(key)
        # a generation's bitmaps are the ids from its base on, as many as
        # its header says: one batch delete, no walk over every key
        header = self.gen_config(gen)
        if header.nbitmaps:
            base = gen * GEN_BITMAPS
            self.maps[fw.MAP_FW_BITMAPS].delete_batch(_pack_u32(range(base, base + header.nbitmaps)), header.nbitmaps)
            header.nbitmaps = 0  # the generation is not live: no frame reads its header
            self.maps[fw.MAP_FW_GENS].update(gen, header)

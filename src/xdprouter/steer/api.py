"""``Steering``: the steering rules of the xdprouter attached in this
namespace, and the AF_XDP sockets its ``xsk`` rules deliver to.

As with the firewall, state lives only in the attached program's maps: a
change writes the rules into the generation that is not live, then flips
``xdpr_st_state.gen`` with one write, and waits an RCU grace period
(membarrier) before anything the old generation used (a cpumap entry) goes.

>>> s = Steering()                                                # doctest: +SKIP
>>> s.add(SteerRule.parse("cpu", cpu=1, proto="udp", dport="5353"))  # doctest: +SKIP
>>> sock = s.open_socket("eth0", 0)   # xsk rules on eth0 queue 0 reach it  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from collections.abc import Iterator
from typing import Any

from .. import netlink
from ..dataplane import abi_steer as st
from ..dataplane import bpf, instance
from ..dataplane.instance import Instance
from ..errors import UsageError
from .rules import SteerCounters, SteerRule, decode, encode, online_cpus, rule_from_config

NOT_ATTACHED = "xdprouter is not attached in this namespace: attach it first"
_CPUMAP_VAL = struct.Struct("=Ii")  # struct bpf_cpumap_val: qsize, program fd (0: none)


class _Tables:
    """The steering maps of one attached program, and the namespace's interfaces."""

    def __init__(self, inst: Instance) -> None:
        inst.require(st.STEER_MAPS, "steering")
        self.inst = inst
        self.maps = inst.maps
        self.links = {link.name: link.index for link in inst.links}
        self.names = {link.index: link.name for link in inst.links}

    def state(self) -> st.SteerState:
        return self.maps[st.MAP_STEER_STATE].lookup_as(0, st.SteerState) or st.SteerState()

    def raw_rules(self) -> list[st.SteerRule]:
        s = self.state()
        m = self.maps[st.MAP_STEER_RULES]
        out = []
        for pos in range(s.nrules[s.gen] if s.enabled else 0):
            raw = m.lookup_as(s.gen * st.STEER_MAX_RULES + pos, st.SteerRule)
            assert raw is not None
            out.append(raw)
        return out

    def fw_sets(self) -> dict[str, int]:
        """The firewall's named sets: name -> slot (a rule's @SET)."""
        if not {"xdpr_fw_state", "xdpr_fw_sets"} <= set(self.maps):
            return {}
        from ..firewall.tables import Tables

        return {name: slot for name, (slot, _) in Tables(self.inst).sets().items()}

    def qsizes(self) -> dict[int, int]:
        """CPU -> queue size of each cpumap entry."""
        out = {}
        m = self.maps[st.MAP_STEER_CPUS]
        for cpu in range(st.STEER_MAX_CPUS):
            raw = m.lookup(cpu)
            if raw is not None:
                out[cpu] = _CPUMAP_VAL.unpack_from(raw)[0]
        return out

    def read(self) -> list[SteerRule]:
        sets = {slot: name for name, slot in self.fw_sets().items()}
        qsizes = self.qsizes()
        return [decode(r, self.names, sets, qsizes) for r in self.raw_rules()]

    def counter(self, rule_id: int) -> tuple[int, int, int, int]:
        per_cpu = self.maps[st.MAP_STEER_COUNT].lookup_per_cpu(rule_id, st.SteerCounter)
        return (
            sum(c.packets for c in per_cpu),
            sum(c.bytes for c in per_cpu),
            sum(c.missed for c in per_cpu),
            sum(c.missed_bytes for c in per_cpu),
        )

    # -- changing ----------------------------------------------------------

    def check(self, rules: list[SteerRule]) -> dict[int, int]:
        """Raise UsageError for anything apply() would refuse; the queue size each CPU will have."""
        if len(rules) > st.STEER_MAX_RULES:
            raise UsageError(f"too many steering rules (at most {st.STEER_MAX_RULES})")
        sets = self.fw_sets()
        online = online_cpus()
        current = self.qsizes()
        wanted: dict[int, int] = {}
        for r in rules:
            m = r.match
            if m.iface and m.iface not in self.links:
                raise UsageError(f"no interface {m.iface!r}")
            for ref in (m.src, m.dst):
                if ref and ref.startswith("@") and ref[1:] not in sets:
                    raise UsageError(f"unknown set {ref[1:]!r} (sets are the firewall's: `xdprouter firewall set`)")
            if r.action != "cpu":
                continue
            assert r.cpu is not None
            if r.cpu not in online:
                raise UsageError(f"CPU {r.cpu} is not online (online: {_cpu_list(online)})")
            if r.queue_size is not None:
                if wanted.get(r.cpu, r.queue_size) != r.queue_size:
                    raise UsageError(f"CPU {r.cpu} given two queue sizes ({wanted[r.cpu]} and {r.queue_size})")
                wanted[r.cpu] = r.queue_size
        for r in rules:
            if r.action == "cpu" and r.cpu not in wanted:
                assert r.cpu is not None
                wanted[r.cpu] = current.get(r.cpu, st.STEER_DEFAULT_QSIZE)
        return wanted

    def apply(self, rules: list[SteerRule]) -> None:
        """Make ``rules`` the steering rules: check, number, write the other
        generation, flip, then drop the cpumap entries no rule uses."""
        qsizes = self.check(rules)
        used = {r.id for r in rules if r.id}
        free = iter(i for i in range(1, st.STEER_MAX_IDS) if i not in used)
        numbered = [r if r.id else dataclasses.replace(r, id=next(free)) for r in rules]
        sets = self.fw_sets()
        raws = [encode(r, self.links.get(r.match.iface or "", 0), sets) for r in numbered]
        for r in numbered:
            if r.id not in {x.id for x in rules}:
                self.maps[st.MAP_STEER_COUNT].zero(r.id)
        cpus = self.maps[st.MAP_STEER_CPUS]
        current = self.qsizes()
        for cpu, qsize in qsizes.items():
            if current.get(cpu) != qsize:
                try:
                    cpus.update(cpu, _CPUMAP_VAL.pack(qsize, 0))
                except bpf.BpfError as e:
                    raise UsageError(f"CPU {cpu}: the kernel refused a cpumap entry ({e})") from None
        s = self.state()
        new = 1 - s.gen
        m = self.maps[st.MAP_STEER_RULES]
        for pos, raw in enumerate(raws):
            m.update(new * st.STEER_MAX_RULES + pos, raw)
        s.nrules[new] = len(raws)
        self.maps[st.MAP_STEER_STATE].update(0, s)  # the live generation is untouched
        s.gen, s.enabled = new, int(bool(raws))
        self.maps[st.MAP_STEER_STATE].update(0, s)  # one word changes: the flip
        bpf.membarrier()
        for cpu in set(current) - set(qsizes):
            cpus.delete(cpu)
        for r, n in zip(rules, numbered, strict=True):
            r.id = n.id


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


class Steering:
    """The steering rules of the xdprouter attached in the caller's namespace."""

    @contextlib.contextmanager
    def _open(self, locked: bool = True) -> Iterator[_Tables]:
        with instance.attached(lock=locked, missing=NOT_ATTACHED) as inst:
            yield _Tables(inst)

    def rules(self) -> list[SteerRule]:
        with self._open(locked=False) as t:
            return t.read()

    def counters(self) -> list[SteerCounters]:
        with self._open(locked=False) as t:
            return [SteerCounters(r, i, *t.counter(r.id)) for i, r in enumerate(t.read())]

    def add(self, rule: SteerRule, position: int | None = None) -> SteerRule:
        with self._open() as t:
            rules = t.read()
            pos = len(rules) if position is None else position
            if not 0 <= pos <= len(rules):
                raise UsageError(f"position {position} out of range (0-{len(rules)})")
            rules.insert(pos, rule)
            t.apply(rules)
            return rule

    def delete(self, ids: list[int]) -> None:
        with self._open() as t:
            rules = t.read()
            unknown = set(ids) - {r.id for r in rules}
            if unknown:
                raise UsageError(f"no steering rule with id {', '.join(map(str, sorted(unknown)))}")
            t.apply([r for r in rules if r.id not in ids])

    def replace(self, rules: list[SteerRule]) -> None:
        """Every rule at once, in one generation."""
        with self._open() as t:
            t.apply(rules)

    def flush(self) -> None:
        self.replace([])

    def check(self, rules: list[SteerRule]) -> None:
        """Raise what replace() would refuse (CPUs, interfaces, sets), changing nothing."""
        with self._open(locked=False) as t:
            t.check(rules)

    def load_config(self, section: dict[str, Any]) -> int:
        """A ``[steer]`` section (``rules = [...]`` tables) as the whole rule
        set; everything checked before anything changes. Returns the rule count."""
        unknown = set(section) - {"rules"}
        if unknown:
            raise UsageError(f"steer: unknown key(s) {', '.join(sorted(unknown))} (known: rules)")
        specs = section.get("rules", [])
        if not isinstance(specs, list):
            raise UsageError("steer.rules: must be an array of tables ([[steer.rules]])")
        rules = [rule_from_config(f"steer.rules[{i}]", spec) for i, spec in enumerate(specs)]
        self.replace(rules)
        return len(rules)

    # -- AF_XDP sockets ----------------------------------------------------

    def open_socket(self, iface: str, queue: int = 0, **socket_options: Any) -> Any:
        """An :class:`xdprouter.xsk.Socket` on ``iface``'s ``queue``, bound
        where ``xsk`` rules deliver: the interface must be attached and have
        the queue. Close it (or use it as a context manager) to stop."""
        from ..xsk import Socket, queue_count

        self._slot(iface)  # refused before a socket exists
        queues = queue_count(iface)
        if not 0 <= queue < queues:
            raise UsageError(
                f"{iface} has {queues} queue{'s' if queues > 1 else ''} (0..{queues - 1}), no queue {queue}"
            )
        sock = Socket(iface, queue, **socket_options)
        try:
            self.bind_socket(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def bind_socket(self, sock: Any) -> None:
        """Deliver the frames ``xsk`` rules match on ``sock``'s interface and
        queue to ``sock`` (an :class:`xdprouter.xsk.Socket`). The kernel
        removes the entry when the socket closes."""
        if sock.queue >= st.STEER_XSK_QUEUES:
            raise UsageError(f"queue {sock.queue}: steering reaches queues 0..{st.STEER_XSK_QUEUES - 1}")
        with self._open() as t:
            slot = _attached_slot(t.inst, sock.iface, sock.ifindex)
            t.maps[st.MAP_STEER_XSK].update(slot * st.STEER_XSK_QUEUES + sock.queue, sock.fileno())

    def unbind(self, iface: str, queue: int) -> bool:
        """Stop delivering to the socket of ``iface``'s ``queue``; False if none was bound."""
        if not 0 <= queue < st.STEER_XSK_QUEUES:
            return False
        with self._open() as t:
            (link,) = netlink.resolve([iface])
            slot = _attached_slot(t.inst, iface, link.index)
            return t.maps[st.MAP_STEER_XSK].delete(slot * st.STEER_XSK_QUEUES + queue)

    def _slot(self, iface: str) -> int:
        (link,) = netlink.resolve([iface])
        with self._open(locked=False) as t:
            return _attached_slot(t.inst, iface, link.index)


def _attached_slot(inst: Instance, iface: str, ifindex: int) -> int:
    config = inst.config(ifindex)
    if config is None:
        raise UsageError(f"{iface} is not attached to xdprouter: `xdprouter attach {iface}` first")
    return int(config.slot)


def forget_sockets(inst: Instance, slot: int) -> None:
    """AF_XDP sockets registered for xsk steering rules under this slot
    belong to an interface detached since (the kernel would drop a frame
    redirected to a socket of another device): gone before the slot is reused."""
    sockets = inst.maps.get(st.MAP_STEER_XSK)
    if sockets is not None:
        for queue in range(st.STEER_XSK_QUEUES):
            sockets.delete(slot * st.STEER_XSK_QUEUES + queue)

"""A steering rule: the firewall's match fields (firewall/rules.py, parsed and
checked by ``Rule.parse``) and where a matching frame goes (``cpu N`` or
``xsk``); its data-plane form and back."""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from ..dataplane import abi_steer as st
from ..errors import UsageError
from ..firewall.rules import RULE_FIELDS, Rule, wrong_kind

ACTIONS = ("cpu", "xsk")
# the firewall's fields a steering rule matches on (its rates and blocks are the firewall's own)
MATCH_FIELDS = ("src", "dst", "proto", "sport", "dport", "icmp_type", "iface")
CONFIG_KEYS = ("action", "cpu", "queue_size", *MATCH_FIELDS)


def online_cpus() -> set[int]:
    """The CPUs a cpumap entry can use now (/sys/devices/system/cpu/online)."""
    try:
        text = open("/sys/devices/system/cpu/online").read().strip()
    except OSError:
        return set(os.sched_getaffinity(0))
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


@dataclass
class SteerRule:
    """Where frames matching ``match`` go: ``cpu`` (the kernel's stack on CPU
    ``cpu``, through a cpumap entry of ``queue_size`` frames) or ``xsk``
    (the AF_XDP socket bound to the frame's interface and rx queue)."""

    action: str
    match: Rule = field(default_factory=Rule)
    cpu: int | None = None
    queue_size: int | None = None  # None: the CPU's entry as it is, or STEER_DEFAULT_QSIZE
    id: int = 0  # stable, assigned when added

    @classmethod
    def parse(cls, action: str, cpu: Any = None, queue_size: Any = None, **match: Any) -> SteerRule:
        """A checked rule from what an operator gave; UsageError (one line) otherwise.
        Whether the CPU is online and the interface exists is checked when it is applied."""
        unknown = set(match) - set(MATCH_FIELDS)
        if unknown:
            raise UsageError(f"steering rules match on {', '.join(MATCH_FIELDS)}, not {', '.join(sorted(unknown))}")
        if action not in ACTIONS:
            raise UsageError(f"unknown steering action {action!r} (cpu or xsk)")
        if action == "cpu":
            if cpu is None:
                raise UsageError("a cpu rule needs --cpu N")
            cpu = _int(cpu, "cpu", 0, st.STEER_MAX_CPUS - 1)
            if queue_size is not None:
                queue_size = _int(queue_size, "queue size", 1, st.STEER_MAX_QSIZE)
        elif cpu is not None or queue_size is not None:
            raise UsageError("--cpu and --queue-size belong to cpu rules")
        given = {k: v for k, v in match.items() if v is not None}
        return cls(action, Rule.parse(action="allow", **given), cpu, queue_size)

    def describe(self) -> str:
        head = f"cpu {self.cpu}" if self.action == "cpu" else "xsk"
        if self.queue_size:
            head += f" (queue {self.queue_size})"
        what = self.match.describe().split(" ", 1)[1:]  # without the firewall action
        return " ".join([head, *what]) if what else f"{head} every frame"

    def as_dict(self) -> dict[str, Any]:
        m = self.match.as_dict()
        out: dict[str, Any] = {"id": self.id, "action": self.action}
        if self.action == "cpu":
            out["cpu"] = self.cpu
            out["queue_size"] = self.queue_size
        out.update({k: m[k] for k in MATCH_FIELDS})
        return out


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{what} must be an integer")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} {value!r} is not an integer") from None
    if not low <= n <= high:
        raise UsageError(f"{what} {n} out of range ({low}-{high})")
    return n


def rule_from_config(key: str, spec: Any) -> SteerRule:
    """One ``[[steer.rules]]`` table; errors name ``key``."""
    if not isinstance(spec, dict):
        raise UsageError(f"{key}: not a table")
    unknown = set(spec) - set(CONFIG_KEYS)
    if unknown:
        raise UsageError(f"{key}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(CONFIG_KEYS)})")
    if "action" not in spec:
        raise UsageError(f"{key}: no action (cpu or xsk)")
    for k, v in spec.items():
        if k in MATCH_FIELDS and (kind := wrong_kind(k, v)):
            raise UsageError(f"{key}.{k}: must be {kind}")
    kw = {k: (str(v) if k in ("sport", "dport") else v) for k, v in spec.items()}
    try:
        return SteerRule.parse(**kw)
    except UsageError as e:
        raise UsageError(f"{key}: {e}") from None


def add_match_arguments(parser: argparse.ArgumentParser, types: dict[str, object]) -> None:
    """The firewall's options for the match fields (``xdprouter firewall add``)."""
    for name in MATCH_FIELDS:
        f = RULE_FIELDS[name]
        cli = dict(f.metadata["cli"])
        flag = cli.pop("flag", "--" + name.replace("_", "-"))
        cli["type"] = types.get(name, cli.get("type"))
        if cli["type"] is None:
            del cli["type"]
        parser.add_argument(flag, dest=name, help=f.metadata["help"] or None, **cli)


# -- the data-plane form ---------------------------------------------------


def _words(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[ctypes.Array, ctypes.Array]:  # type: ignore[type-arg]
    words = ctypes.c_uint32 * 4
    addr = words.from_buffer_copy(net.network_address.packed.ljust(16, b"\0"))
    mask = words.from_buffer_copy(net.netmask.packed.ljust(16, b"\0"))
    return addr, mask


def encode(rule: SteerRule, ifindex: int, sets: dict[str, int]) -> st.SteerRule:
    """The ``xdpr_st_rules`` entry of ``rule`` (interface and sets resolved by the caller)."""
    m = rule.match
    out = st.SteerRule(ifindex=ifindex, id=rule.id, family=m.family)
    flags = st.SteerFlag(0)
    out.action = st.SteerAction.CPU if rule.action == "cpu" else st.SteerAction.XSK
    out.target = rule.cpu or 0
    if m.proto is not None:
        flags |= st.SteerFlag.PROTO
        out.proto = m.proto
    if m.icmp_type is not None:
        flags |= st.SteerFlag.ICMP_TYPE
        out.icmp_type = m.icmp_type
    for name, value, prefix_flag, set_flag in (
        ("src", m.src, st.SteerFlag.SRC, st.SteerFlag.SRC_SET),
        ("dst", m.dst, st.SteerFlag.DST, st.SteerFlag.DST_SET),
    ):
        if not value:
            continue
        if value.startswith("@"):
            flags |= set_flag
            setattr(out, f"{name}_set", sets[value[1:]])
        else:
            flags |= prefix_flag
            addr, mask = _words(ipaddress.ip_network(value))
            setattr(out, name, addr)
            setattr(out, f"{name}_mask", mask)
    for name, rng, flag in (("sport", m.sport, st.SteerFlag.SPORT), ("dport", m.dport, st.SteerFlag.DPORT)):
        if rng:
            flags |= flag
            setattr(out, f"{name}_lo", rng[0])
            setattr(out, f"{name}_hi", rng[1])
    out.flags = int(flags)
    return out


def decode(raw: st.SteerRule, names: dict[int, str], sets: dict[int, str], qsizes: dict[int, int]) -> SteerRule:
    """Back from an ``xdpr_st_rules`` entry."""
    f = st.SteerFlag(raw.flags)
    m = Rule(action="allow")
    fam = raw.family or 4
    for name, prefix_flag, set_flag in (
        ("src", st.SteerFlag.SRC, st.SteerFlag.SRC_SET),
        ("dst", st.SteerFlag.DST, st.SteerFlag.DST_SET),
    ):
        if f & set_flag:
            slot = getattr(raw, f"{name}_set")
            setattr(m, name, "@" + sets.get(slot, f"(deleted set {slot})"))
        elif f & prefix_flag:
            size = 4 if fam == 4 else 16
            addr = bytes(getattr(raw, name))[:size]
            plen = sum(bin(b).count("1") for b in bytes(getattr(raw, f"{name}_mask"))[:size])
            setattr(m, name, str(ipaddress.ip_network((addr, plen))))
    if f & st.SteerFlag.PROTO:
        m.proto = raw.proto
    if f & st.SteerFlag.ICMP_TYPE:
        m.icmp_type = raw.icmp_type
    if f & st.SteerFlag.SPORT:
        m.sport = (raw.sport_lo, raw.sport_hi)
    if f & st.SteerFlag.DPORT:
        m.dport = (raw.dport_lo, raw.dport_hi)
    if raw.ifindex:
        m.iface = names.get(raw.ifindex, f"ifindex:{raw.ifindex}")
    if raw.action == st.SteerAction.CPU:
        return SteerRule("cpu", m, raw.target, qsizes.get(raw.target), raw.id)
    return SteerRule("xsk", m, None, None, raw.id)


@dataclass
class SteerCounters:
    rule: SteerRule
    position: int
    packets: int  # steered
    bytes: int
    missed: int  # matched, but no socket on the queue (or no CPU entry): went on as if unmatched
    missed_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            **self.rule.as_dict(),
            "packets": self.packets,
            "bytes": self.bytes,
            "missed": self.missed,
            "missed_bytes": self.missed_bytes,
        }

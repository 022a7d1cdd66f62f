"""The firewall's control plane: rules, named prefix sets, policies, and
atomic changes of the data plane's tables (bpf/include/firewall.h).

State lives only in the attached program's maps (found again through the
interfaces, as ``router.py`` does): rules last as long as the program is
attached. Every change builds a complete new *generation* of the lookup
tables beside the live one and then flips ``xdpr_fw_state.gen`` with one
write; the old generation is removed only after an RCU grace period
(membarrier), when no frame can still be using it.

>>> fw = Firewall()                                       # doctest: +SKIP
>>> fw.add(Rule.parse(action="drop", src="192.0.2.0/24"))   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import math
import os
import re
import socket
import struct
import time
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import abi, bpf, netlink
from .errors import UsageError
from .router import Router, _Instance

ACTIONS = {"allow": abi.FwAction.ALLOW, "drop": abi.FwAction.DROP, "limit": abi.FwAction.LIMIT}
PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58, "sctp": 132}
_PROTO_NAMES = {v: k for k, v in PROTOS.items()}
# ICMP (1) and ICMPv6 (58) message types by name, for --icmp-type
ICMP_TYPES = {
    1: {
        "echo-reply": 0,
        "dest-unreachable": 3,
        "redirect": 5,
        "echo-request": 8,
        "router-advertisement": 9,
        "router-solicitation": 10,
        "time-exceeded": 11,
        "parameter-problem": 12,
        "timestamp-request": 13,
        "timestamp-reply": 14,
    },
    58: {
        "dest-unreachable": 1,
        "packet-too-big": 2,
        "time-exceeded": 3,
        "parameter-problem": 4,
        "echo-request": 128,
        "echo-reply": 129,
        "router-solicitation": 133,
        "router-advertisement": 134,
        "neighbour-solicitation": 135,
        "neighbour-advertisement": 136,
        "redirect": 137,
    },
}
_GEN_BITMAPS = abi.FW_MAX_BITMAPS // 2  # bitmap ids per generation (the last id is the empty bitmap)
_SET_NAME_LEN = 31
_LPM_KEY = struct.Struct("<I4s16s")
_MEMBARRIER_CMD_GLOBAL = 1
# membarrier(2): x86_64 has its own number, the generic table (arm64, riscv) another
_SYS_MEMBARRIER = {"x86_64": 324, "aarch64": 283, "riscv64": 283}.get(os.uname().machine, 283)
_libc = ctypes.CDLL(None, use_errno=True)


def _prefix(text: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UsageError(f"bad {what} prefix {text!r}") from None


def _ports(text: str | None, what: str) -> tuple[int, int] | None:
    if text is None or text == "":
        return None
    lo_s, _, hi_s = str(text).partition("-")
    try:
        lo, hi = int(lo_s), int(hi_s or lo_s)
    except ValueError:
        raise UsageError(f"bad {what} {text!r}: a port or a range LOW-HIGH") from None
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535):
        raise UsageError(f"{what} {text!r} out of range (0-65535)")
    if lo > hi:
        raise UsageError(f"{what} {text!r}: low end above high end")
    return lo, hi


def _proto(text: str | int | None) -> int | None:
    if text is None or text == "" or text == "any":
        return None
    if isinstance(text, int) or (str(text).isascii() and str(text).isdigit()):
        value = int(text)
        if not 0 <= value <= 255:
            raise UsageError(f"protocol {text!r} out of range (0-255)")
        return value
    if str(text).lower() not in PROTOS:
        raise UsageError(f"unknown protocol {text!r} ({', '.join(PROTOS)} or a number)")
    return PROTOS[str(text).lower()]


_U32 = (1 << 32) - 1


def _check_limits(rule: Rule) -> None:
    """Values must fit the data plane's fields: nothing silently truncated."""
    if not math.isfinite(rule.block_seconds) or rule.block_seconds * 1e9 >= 1 << 63:
        raise UsageError(f"--block-for {rule.block_seconds} is not a usable number of seconds")
    if rule.pps > 1_000_000_000:
        raise UsageError(f"--pps {rule.pps} above 1000000000")
    for what, value in (
        ("--burst", rule.burst),
        ("--burst-bytes", rule.burst_bytes),
        ("--block-after", rule.block_after),
    ):
        if value > _U32:
            raise UsageError(f"{what} {value} above {_U32}")
    if rule.bps > _U32:
        raise UsageError(f"--bps {rule.bps} above {_U32}")
    if rule.pps and not rule.burst and rule.pps > _U32:
        raise UsageError(f"--pps {rule.pps} too large for a default burst")


@dataclass
class Rule:
    """One rule. ``src``/``dst`` are prefixes or ``@set``; ports are ranges."""

    action: str = "drop"
    src: str | None = None
    dst: str | None = None
    proto: int | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    icmp_type: int | None = None  # with proto icmp or icmpv6
    iface: str | None = None
    pps: int = 0
    bps: int = 0
    burst: int = 0  # packets (default: one second's worth)
    burst_bytes: int = 0  # bytes (default: one second's worth)
    block_after: int = 0  # over-limit packets within a second that block the source (0: never)
    block_seconds: float = 0.0
    id: int = 0  # stable, assigned when added

    @classmethod
    def parse(
        cls,
        *,
        action: str = "drop",
        src: str | None = None,
        dst: str | None = None,
        proto: str | int | None = None,
        sport: str | None = None,
        dport: str | None = None,
        icmp_type: str | int | None = None,
        iface: str | None = None,
        pps: int = 0,
        bps: int = 0,
        burst: int = 0,
        burst_bytes: int = 0,
        block_after: int = 0,
        block_seconds: float = 0.0,
    ) -> Rule:
        """A validated rule; raises UsageError with a one-line message."""
        given = {
            "src": src,
            "dst": dst,
            "proto": proto,
            "sport": sport,
            "dport": dport,
            "icmp_type": icmp_type,
            "iface": iface,
        }
        empty = [name for name, value in given.items() if value is not None and str(value).strip() == ""]
        if empty:
            # an empty variable in a script must not become "match everything"
            raise UsageError(f"empty value for {', '.join(empty)}")
        if action not in ACTIONS:
            raise UsageError(f"unknown action {action!r} (allow, drop or limit)")
        fams = set()
        for what, value in (("source", src), ("destination", dst)):
            if value and not value.startswith("@"):
                fams.add(_prefix(value, what).version)
            elif value and not value[1:]:
                raise UsageError(f"empty set name in {what} {value!r}")
        if len(fams) > 1:
            raise UsageError("source and destination prefixes are of different families")
        rule = cls(
            action=action,
            src=_norm(src),
            dst=_norm(dst),
            proto=_proto(proto),
            sport=_ports(sport, "source port"),
            dport=_ports(dport, "destination port"),
            iface=iface or None,
            pps=int(pps),
            bps=int(bps),
            burst=int(burst),
            burst_bytes=int(burst_bytes),
            block_after=int(block_after),
            block_seconds=float(block_seconds),
        )
        if rule.proto is not None and rule.proto not in (6, 17, 33, 132, 136) and (rule.sport or rule.dport):
            raise UsageError(f"protocol {rule.proto} has no ports")
        if icmp_type is not None:
            rule.icmp_type = _icmp_type(icmp_type, rule.proto)
        if action == "limit" and not (rule.pps or rule.bps):
            raise UsageError("a limit rule needs --pps or --bps")
        if action != "limit" and (rule.pps or rule.bps or rule.block_after):
            raise UsageError("--pps, --bps and --block-after belong to limit rules")
        if min(rule.pps, rule.bps, rule.burst, rule.burst_bytes, rule.block_after) < 0 or rule.block_seconds < 0:
            raise UsageError("rates, bursts and block times cannot be negative")
        if rule.block_after and not rule.block_seconds:
            raise UsageError("--block-after needs --block-for SECONDS")
        _check_limits(rule)
        return rule

    @property
    def family(self) -> int:
        for value in (self.src, self.dst):
            if value and not value.startswith("@"):
                return ipaddress.ip_network(value).version
        return 0

    def describe(self) -> str:
        parts = [self.action]
        if self.iface:
            parts.append(f"iface {self.iface}")
        if self.proto is not None:
            parts.append(_PROTO_NAMES.get(self.proto, str(self.proto)))
        for name, value in (("src", self.src), ("dst", self.dst)):
            if value:
                parts.append(f"{name} {value}")
        for name, rng in (("sport", self.sport), ("dport", self.dport)):
            if rng:
                parts.append(f"{name} {rng[0]}" + (f"-{rng[1]}" if rng[1] != rng[0] else ""))
        if self.icmp_type is not None:
            names = {v: k for k, v in ICMP_TYPES.get(self.proto or 0, {}).items()}
            parts.append(f"icmp-type {names.get(self.icmp_type, self.icmp_type)}")
        if self.action == "limit":
            if self.pps:
                parts.append(f"{self.pps} pps burst {self.burst or self.pps}")
            if self.bps:
                parts.append(f"{self.bps} B/s burst {self.burst_bytes or self.bps} B")
            if self.block_after:
                parts.append(f"block {self.block_seconds:g} s after {self.block_after} over/s")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("sport", "dport"):
            if out[key]:
                lo, hi = out[key]
                out[key] = f"{lo}-{hi}" if lo != hi else str(lo)
        return out


def _icmp_type(value: str | int, proto: int | None) -> int:
    """An ICMP type by number or name, for a rule on ICMP or ICMPv6."""
    if proto not in ICMP_TYPES:
        raise UsageError("--icmp-type needs --proto icmp or --proto icmpv6")
    text = str(value).strip().lower()
    if text.isascii() and text.isdigit() and 0 <= int(text) <= 255:
        return int(text)
    if text in ICMP_TYPES[proto]:
        return ICMP_TYPES[proto][text]
    known = ", ".join(sorted(ICMP_TYPES[proto]))
    raise UsageError(f"unknown {_PROTO_NAMES[proto]} type {value!r} (0-255 or {known})")


def _norm(value: str | None) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return value
    return str(ipaddress.ip_network(value, strict=False))


@dataclass
class RuleCounters:
    rule: Rule
    position: int
    packets: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, **self.rule.as_dict(), "packets": self.packets, "bytes": self.bytes}


@dataclass
class SetInfo:
    name: str
    slot: int
    prefixes: int


@dataclass
class _Compiled:
    """One generation's tables, as bytes ready for the maps."""

    bitmaps: dict[int, bytes] = field(default_factory=dict)  # id -> FwBitmap
    lpm: list[tuple[bytes, int]] = field(default_factory=list)  # FwLpmKey -> bitmap id
    ports: list[list[int]] = field(default_factory=list)  # [sport ids, dport ids], FW_PORT_SLOTS each
    ifproto: list[tuple[bytes, int]] = field(default_factory=list)
    rules: list[abi.FwRule] = field(default_factory=list)
    gen: abi.FwGen = field(default_factory=abi.FwGen)


def parse_prefix_lines(lines: Iterable[str]) -> list[tuple[int, bytes, int]]:
    """(family, address bytes, prefix length) per line; blanks and # comments skipped."""
    out = []
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        addr, _, plen_s = text.partition("/")
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            raw = socket.inet_pton(fam, addr)
            bits = len(raw) * 8
            plen = int(plen_s) if plen_s else bits
            if not 0 <= plen <= bits:
                raise ValueError
        except (OSError, ValueError):
            raise UsageError(f"line {n}: bad prefix {text!r}") from None
        out.append((4 if fam == socket.AF_INET else 6, raw, plen))
    return out


def _set_key(family: int, raw: bytes, plen: int) -> bytes:
    return _LPM_KEY.pack(32 + plen, bytes((0, 0, family, 0)), raw.ljust(16, b"\0"))


def _membarrier() -> None:
    """Wait for an RCU grace period: every XDP run that began before has ended."""
    if _libc.syscall(_SYS_MEMBARRIER, _MEMBARRIER_CMD_GLOBAL, 0, 0) != 0:
        time.sleep(0.05)  # no membarrier: a frame's run takes microseconds


class Firewall:
    """The firewall of the xdprouter attached in the caller's namespace."""

    def __init__(self) -> None:
        self._router = Router()

    @contextlib.contextmanager
    def _open(self, locked: bool = True) -> Iterator[_State]:
        inst = self._router._find(self._router._attached())
        if inst is None:
            raise UsageError("xdprouter is not attached in this namespace: attach it first")
        maps: dict[str, bpf.Map] = {}
        try:
            for map_id in inst.prog.map_ids():
                m = bpf.Map.from_id(map_id)
                if m.name in abi.FW_MAPS:
                    maps[m.name] = m
                else:
                    m.close()
            missing = set(abi.FW_MAPS) - set(maps)
            if missing:
                raise UsageError(
                    f"the attached xdprouter program has no firewall maps ({', '.join(sorted(missing))}): "
                    "re-attach after `make bpf`"
                )
            with self._router._locked() if locked else contextlib.nullcontext():
                yield _State(inst, maps)
        finally:
            for m in maps.values():
                m.close()
            inst.close()

    # -- reading ---------------------------------------------------------

    def rules(self) -> list[Rule]:
        with self._open(locked=False) as st:
            return st.read()[0]

    def policies(self) -> dict[str, str]:
        with self._open(locked=False) as st:
            return st.read()[1]

    def counters(self) -> list[RuleCounters]:
        with self._open(locked=False) as st:
            rules, policies = st.read()
            out = [RuleCounters(r, i, *st.counter(r.id)) for i, r in enumerate(rules)]
            for i, (iface, rule_id) in enumerate(st.policy_ids().items()):
                pol = Rule(action=policies[iface], iface=iface, id=rule_id)
                out.append(RuleCounters(pol, len(rules) + i, *st.counter(rule_id)))
            return out

    def sets(self) -> list[SetInfo]:
        with self._open(locked=False) as st:
            return [SetInfo(name, slot, count) for name, (slot, count) in st.sets().items()]

    def set_prefixes(self, name: str) -> list[str]:
        """The prefixes of set ``name``, as `set load` reads them."""
        with self._open(locked=False) as st:
            return st.set_prefixes(name)

    def blocked(self) -> list[dict[str, Any]]:
        """Sources blocked now, with seconds left."""
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        out = []
        with self._open(locked=False) as st:
            m = st.maps[abi.MAP_FW_BLOCKED]
            for raw in m.raw_keys():
                key = abi.FwBlockKey.from_buffer_copy(raw)
                val = m.lookup(key)
                if val is None:
                    continue
                blk = abi.FwBlock.from_buffer_copy(val)
                if blk.until > now:
                    n = 4 if key.family == 4 else 16
                    addr = ipaddress.ip_address(bytes(key.addr[:n]))
                    out.append({"source": str(addr), "rule": blk.rule_id, "seconds_left": (blk.until - now) / 1e9})
        return out

    # -- changing --------------------------------------------------------

    def unblock(self, sources: list[str] | None = None) -> int:
        """Lift blocks made by limit rules: these sources, or all (None)."""
        for a in sources or []:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise UsageError(f"bad address {a!r}") from None
        with self._open() as st:
            return st.unblock(sources)

    def add(self, rule: Rule, position: int | None = None) -> Rule:
        with self._open() as st:
            rules, policies = st.read()
            pos = len(rules) if position is None else position
            if not 0 <= pos <= len(rules):
                raise UsageError(f"position {position} out of range (0-{len(rules)})")
            rules.insert(pos, rule)
            st.apply(rules, policies)
            return rule

    def delete(self, ids: list[int]) -> None:
        with self._open() as st:
            rules, policies = st.read()
            unknown = set(ids) - {r.id for r in rules}
            if unknown:
                raise UsageError(f"no rule with id {', '.join(map(str, sorted(unknown)))}")
            st.apply([r for r in rules if r.id not in ids], policies)

    def replace(self, rules: list[Rule], policies: dict[str, str] | None = None) -> None:
        """Every rule (and policy) at once, in one generation."""
        with self._open() as st:
            st.apply(rules, st.read()[1] if policies is None else policies)

    def flush(self) -> None:
        self.replace([], {})

    def set_policy(self, iface: str, action: str) -> None:
        if action not in ("allow", "drop"):
            raise UsageError(f"unknown policy {action!r} (allow or drop)")
        if not _GONE.fullmatch(iface):  # "ifindex:N": a deleted interface's policy (check() decides)
            netlink.resolve([iface])
        with self._open() as st:
            rules, policies = st.read()
            policies[iface] = action
            st.apply(rules, policies)

    def load_set(self, name: str, prefixes: list[tuple[int, bytes, int]]) -> float:
        """Create or replace set ``name`` atomically; returns the seconds it took."""
        with self._open() as st:
            return st.load_set(name, prefixes)

    def load_set_file(self, name: str, path: str | os.PathLike[str]) -> tuple[int, float]:
        start = time.perf_counter()
        with open(path) as fh:
            prefixes = parse_prefix_lines(fh)
        self.load_set(name, prefixes)
        return len(prefixes), time.perf_counter() - start

    def delete_set(self, name: str) -> None:
        with self._open() as st:
            rules, _ = st.read()
            users = [r.id for r in rules if f"@{name}" in (r.src, r.dst)]
            if users:
                raise UsageError(f"set {name!r} is used by rule(s) {', '.join(map(str, users))}")
            st.delete_set(name)

    def load_config(self, path: str | os.PathLike[str]) -> dict[str, int]:
        """Read a ``[firewall]`` section (TOML, or JSON with a "firewall" key)
        and make it the whole firewall: sets first, then rules and policies
        in one generation. Everything is validated before anything changes."""
        config = load_config_file(path)
        base = Path(path).parent
        sets = {}
        for name, spec in config.get("sets", {}).items():
            if isinstance(spec, list):
                sets[name] = parse_prefix_lines(spec)
            elif isinstance(spec, dict) and "file" in spec:
                with open(base / spec["file"]) as fh:
                    sets[name] = parse_prefix_lines(fh)
            elif isinstance(spec, dict) and "prefixes" in spec:
                sets[name] = parse_prefix_lines(spec["prefixes"])
            else:
                raise UsageError(f"set {name!r}: give a list of prefixes, prefixes = [...] or file = PATH")
        rules = [_rule_from_config(i, spec) for i, spec in enumerate(config.get("rules", []))]
        policies = {str(k): str(v) for k, v in config.get("policy", {}).items()}
        for iface, action in policies.items():
            if action not in ("allow", "drop"):
                raise UsageError(f"policy of {iface}: unknown {action!r} (allow or drop)")
        with self._open() as st:
            known = set(st.sets()) | set(sets)
            for r in rules:
                for ref in (r.src, r.dst):
                    if ref and ref.startswith("@") and ref[1:] not in known:
                        raise UsageError(f"unknown set {ref[1:]!r}")
            st.dry_run(rules, policies, sets)  # refused here, nothing has changed yet
            for name, prefixes in sets.items():
                st.load_set(name, prefixes)
            st.apply(rules, policies)
        return {"rules": len(rules), "sets": len(sets), "policies": len(policies)}


_GONE = re.compile(r"ifindex:(\d+)")


def _ifindex(name: str, links: dict[str, int]) -> int | None:
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


def _known_ifindex(name: str, links: dict[str, int]) -> int:
    index = _ifindex(name, links)
    if index is None:
        raise UsageError(f"no interface {name!r}")
    return index


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    text = Path(path).read_text()
    try:
        data = json.loads(text) if str(path).endswith(".json") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{path}: {str(e).splitlines()[0]}") from None
    section = data.get("firewall")
    if not isinstance(section, dict):
        raise UsageError(f"{path}: no [firewall] section")
    return section


_RULE_KEYS = {
    "action",
    "src",
    "dst",
    "proto",
    "sport",
    "dport",
    "icmp_type",
    "iface",
    "pps",
    "bps",
    "burst",
    "burst_bytes",
    "block_after",
    "block_seconds",
}


def _rule_from_config(i: int, spec: Any) -> Rule:
    if not isinstance(spec, dict):
        raise UsageError(f"rule {i}: not a table")
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise UsageError(f"rule {i}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        kw = {k: (str(v) if k in ("sport", "dport") else v) for k, v in spec.items()}
        return Rule.parse(**kw)
    except UsageError as e:
        raise UsageError(f"rule {i}: {e}") from None


class _State:
    """The firewall maps of one attached program, under the namespace lock."""

    def __init__(self, inst: _Instance, maps: dict[str, bpf.Map]) -> None:
        self.inst = inst
        self.maps = maps

    # -- reading ---------------------------------------------------------

    def state(self) -> abi.FwState:
        raw = self.maps[abi.MAP_FW_STATE].lookup(ctypes.c_uint32(0))
        return abi.FwState.from_buffer_copy(raw) if raw else abi.FwState()

    def gen_config(self, gen: int) -> abi.FwGen:
        raw = self.maps[abi.MAP_FW_GENS].lookup(ctypes.c_uint32(gen))
        return abi.FwGen.from_buffer_copy(raw) if raw else abi.FwGen()

    def _raw_rules(self) -> list[abi.FwRule]:
        st = self.state()
        if not st.enabled:
            return []
        g = self.gen_config(st.gen)
        m = self.maps[abi.MAP_FW_RULES]
        out = []
        for pos in range(g.nrules):
            raw = m.lookup(ctypes.c_uint32(st.gen * abi.FW_MAX_RULES + pos))
            assert raw is not None
            out.append(abi.FwRule.from_buffer_copy(raw))
        return out

    def sets(self) -> dict[str, tuple[int, int]]:
        """name -> (slot, prefixes)."""
        out = {}
        for slot, info in enumerate(self.state().sets):
            if info.used:
                out[bytes(info.name).rstrip(b"\0").decode()] = (slot, info.count)
        return out

    def read(self) -> tuple[list[Rule], dict[str, str]]:
        names = {link.index: link.name for link in netlink.links()}
        slots = {slot: name for name, (slot, _) in self.sets().items()}
        rules, policies = [], {}
        for r in self._raw_rules():
            if r.flags & abi.FwRuleFlag.POLICY:
                policies[names.get(r.ifindex, f"ifindex:{r.ifindex}")] = "drop"
                continue
            rules.append(_decode(r, names, slots))
        return rules, policies

    def policy_ids(self) -> dict[str, int]:
        names = {link.index: link.name for link in netlink.links()}
        return {
            names.get(r.ifindex, f"ifindex:{r.ifindex}"): r.id
            for r in self._raw_rules()
            if r.flags & abi.FwRuleFlag.POLICY
        }

    def counter(self, rule_id: int) -> tuple[int, int]:
        per_cpu = self.maps[abi.MAP_FW_COUNTERS].lookup_per_cpu(ctypes.c_uint32(rule_id), abi.Counter)
        return sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu)  # type: ignore[attr-defined]

    # -- sets --------------------------------------------------------------

    def load_set(self, name: str, prefixes: list[tuple[int, bytes, int]]) -> float:
        if not name or len(name.encode()) > _SET_NAME_LEN or "@" in name or "/" in name:
            raise UsageError(f"bad set name {name!r} (1-{_SET_NAME_LEN} bytes, no @ or /)")
        if len(prefixes) > abi.FW_MAX_SET_PREFIXES:
            raise UsageError(f"set {name!r}: {len(prefixes)} prefixes, at most {abi.FW_MAX_SET_PREFIXES}")
        start = time.perf_counter()
        existing = self.sets()
        if name in existing:
            slot = existing[name][0]
        else:
            free = set(range(abi.FW_MAX_SETS)) - {s for s, _ in existing.values()}
            if not free:
                raise UsageError(f"too many sets (at most {abi.FW_MAX_SETS})")
            slot = min(free)
        keys = b"".join(_set_key(f, raw, plen) for f, raw, plen in prefixes)
        count = len(keys) // _LPM_KEY.size
        trie = bpf.create_lpm_trie(f"xdpr_set{slot}", _LPM_KEY.size, 1, abi.FW_MAX_SET_PREFIXES)
        try:
            trie.update_batch(keys, b"\1" * count, count)
            # Swapping the trie in is one pointer write: frames see the old
            # set or the new one, never a half-filled one.
            self.maps[abi.MAP_FW_SETS].update(ctypes.c_uint32(slot), ctypes.c_uint32(trie.fd))
        finally:
            trie.close()
        st = self.state()
        st.sets[slot] = abi.FwSetInfo(used=1, count=count)
        st.sets[slot].name[: len(name.encode())] = list(name.encode())
        self.maps[abi.MAP_FW_STATE].update(ctypes.c_uint32(0), st)
        return time.perf_counter() - start

    def set_prefixes(self, name: str) -> list[str]:
        existing = self.sets()
        if name not in existing:
            raise UsageError(f"unknown set {name!r}")
        raw_id = self.maps[abi.MAP_FW_SETS].lookup(ctypes.c_uint32(existing[name][0]))
        if raw_id is None:
            return []
        trie = bpf.Map.from_id(struct.unpack("<I", raw_id[:4])[0])
        try:
            keys = [_LPM_KEY.unpack(raw) for raw in trie.raw_keys()]
        finally:
            trie.close()
        nets = [ipaddress.ip_network((addr[: 4 if tag[2] == 4 else 16], plen - 32)) for plen, tag, addr in keys]
        return [str(n) for n in sorted(nets, key=lambda n: (n.version, n))]

    def delete_set(self, name: str) -> None:
        existing = self.sets()
        if name not in existing:
            raise UsageError(f"unknown set {name!r}")
        slot = existing[name][0]
        st = self.state()
        st.sets[slot] = abi.FwSetInfo()
        self.maps[abi.MAP_FW_STATE].update(ctypes.c_uint32(0), st)
        self.maps[abi.MAP_FW_SETS].delete(ctypes.c_uint32(slot))

    # -- compiling and applying ---------------------------------------------

    def check(self, rules: list[Rule], policies: dict[str, str]) -> None:
        """Raise UsageError for what compile() would refuse, changing nothing."""
        if len(rules) + len(policies) > abi.FW_MAX_RULES:
            raise UsageError(f"too many rules (at most {abi.FW_MAX_RULES} with the policies)")
        links = {link.name: link.index for link in netlink.links()}
        for r in rules:
            if r.iface and _ifindex(r.iface, links) is None:
                raise UsageError(f"no interface {r.iface!r}")
        for iface in policies:
            if _ifindex(iface, links) is None:
                raise UsageError(f"no interface {iface!r}")

    def dry_run(self, rules: list[Rule], policies: dict[str, str], new_sets: Iterable[str]) -> None:
        """Compile without writing anything, the sets about to be loaded
        given the slots they would get: raises what apply() would refuse."""
        self.check(rules, policies)
        slots = {name: slot for name, (slot, _) in self.sets().items()}
        free = [i for i in range(abi.FW_MAX_SETS) if i not in slots.values()]
        for name in new_sets:
            if name not in slots:
                if not free:
                    raise UsageError(f"too many sets (at most {abi.FW_MAX_SETS})")
                slots[name] = free.pop(0)
        links = {link.name: link.index for link in netlink.links()}
        _compile(list(rules), policies, links, slots, 1 - self.state().gen, dict.fromkeys(policies, 0))

    def apply(self, rules: list[Rule], policies: dict[str, str]) -> None:
        self.check(rules, policies)
        sets = self.sets()
        for r in rules:
            for ref in (r.src, r.dst):
                if ref and ref.startswith("@") and ref[1:] not in sets:
                    raise UsageError(f"unknown set {ref[1:]!r}")
        old_raw = self._raw_rules()
        self._assign_ids(rules, policies, old_raw)
        cur = self.state()
        new_gen = 1 - cur.gen
        links = {link.name: link.index for link in netlink.links()}
        slots = {n: s for n, (s, _) in sets.items()}
        compiled = _compile(rules, policies, links, slots, new_gen, self._policy_ids)
        self._purge(new_gen)
        self._write(compiled, new_gen)
        state = self.state()
        state.enabled, state.gen = int(bool(compiled.rules)), new_gen
        self.maps[abi.MAP_FW_STATE].update(ctypes.c_uint32(0), state)  # the flip
        _membarrier()
        self._purge(1 - new_gen)
        self._forget_limits({r.id for r in rules if r.action == "limit"})
        self._forget_blocks({r.id for r in rules if r.action == "limit" and r.block_after})

    def _forget_limits(self, keep: set[int]) -> None:
        """Bucket states of limit rules that are gone (ids are reused)."""
        m = self.maps[abi.MAP_FW_LIMITS]
        for raw in list(m.raw_keys()):
            key = abi.FwLimitKey.from_buffer_copy(raw)
            if key.rule_id not in keep:
                m.delete(key)

    def _forget_blocks(self, keep: set[int]) -> None:
        """Blocks made by rules that are gone or no longer block: a block
        outlives its rule no longer than the rule itself."""
        m = self.maps[abi.MAP_FW_BLOCKED]
        for raw in list(m.raw_keys()):
            key = abi.FwBlockKey.from_buffer_copy(raw)
            val = m.lookup(key)
            if val is not None and abi.FwBlock.from_buffer_copy(val).rule_id not in keep:
                m.delete(key)

    def unblock(self, sources: list[str] | None) -> int:
        """Lift the blocks of these sources (all with None); how many were lifted."""
        wanted = {ipaddress.ip_address(a) for a in sources} if sources is not None else None
        m = self.maps[abi.MAP_FW_BLOCKED]
        lifted = 0
        for raw in list(m.raw_keys()):
            key = abi.FwBlockKey.from_buffer_copy(raw)
            addr = ipaddress.ip_address(bytes(key.addr[: 4 if key.family == 4 else 16]))
            if wanted is None or addr in wanted:
                lifted += m.delete(key)
        return lifted

    def _assign_ids(self, rules: list[Rule], policies: dict[str, str], old: list[abi.FwRule]) -> None:
        used = {r.id for r in rules if r.id}
        old_policy = {r.ifindex: r.id for r in old if r.flags & abi.FwRuleFlag.POLICY}
        links = {link.name: link.index for link in netlink.links()}
        self._policy_ids = {}
        for iface, action in policies.items():
            index = _ifindex(iface, links)
            if action == "drop" and index is not None and old_policy.get(index):
                self._policy_ids[iface] = old_policy[index]
        used |= set(self._policy_ids.values())
        free = (i for i in range(1, abi.FW_MAX_IDS) if i not in used)
        zero = bytes(((ctypes.sizeof(abi.Counter) + 7) // 8 * 8) * bpf.possible_cpus())
        counters = self.maps[abi.MAP_FW_COUNTERS]
        for r in rules:
            if not r.id:
                r.id = next(free)
                counters.update(ctypes.c_uint32(r.id), zero)
        for iface, action in policies.items():
            if action == "drop" and iface not in self._policy_ids:
                self._policy_ids[iface] = next(free)
                counters.update(ctypes.c_uint32(self._policy_ids[iface]), zero)

    def _write(self, c: _Compiled, gen: int) -> None:
        bitmaps = self.maps[abi.MAP_FW_BITMAPS]
        if bitmaps.lookup(ctypes.c_uint32(abi.FW_EMPTY_BITMAP)) is None:
            bitmaps.update(ctypes.c_uint32(abi.FW_EMPTY_BITMAP), bytes(ctypes.sizeof(abi.FwBitmap)))
        ids = list(c.bitmaps)
        keys = struct.pack(f"<{len(ids)}I", *ids)
        bitmaps.update_batch(keys, b"".join(c.bitmaps[i] for i in ids), len(ids))
        head = ctypes.sizeof(abi.FwSummary)  # a bitmap starts with its summary
        self.maps[abi.MAP_FW_SUMMARY].update_batch(keys, b"".join(c.bitmaps[i][:head] for i in ids), len(ids))
        lpm = self.maps[abi.MAP_FW_LPM]
        lpm.update_batch(
            b"".join(k for k, _ in c.lpm), struct.pack(f"<{len(c.lpm)}I", *(v for _, v in c.lpm)), len(c.lpm)
        )
        ifp = self.maps[abi.MAP_FW_IFPROTO]
        self._batch(ifp, c.ifproto)
        ports = self.maps[abi.MAP_FW_PORTS]
        for d in (0, 1):
            base = (gen * 2 + d) * abi.FW_PORT_SLOTS
            keys = struct.pack(f"<{abi.FW_PORT_SLOTS}I", *range(base, base + abi.FW_PORT_SLOTS))
            ports.update_batch(keys, struct.pack(f"<{abi.FW_PORT_SLOTS}I", *c.ports[d]), abi.FW_PORT_SLOTS)
        if c.rules:
            n = len(c.rules)
            keys = struct.pack(f"<{n}I", *range(gen * abi.FW_MAX_RULES, gen * abi.FW_MAX_RULES + n))
            self.maps[abi.MAP_FW_RULES].update_batch(keys, b"".join(bytes(r) for r in c.rules), n)
        self.maps[abi.MAP_FW_GENS].update(ctypes.c_uint32(gen), c.gen)

    @staticmethod
    def _batch(m: bpf.Map, items: list[tuple[bytes, int]]) -> None:
        values = struct.pack(f"<{len(items)}I", *(v for _, v in items))
        m.update_batch(b"".join(k for k, _ in items), values, len(items))

    def _purge(self, gen: int) -> None:
        """Remove a generation's hash and trie entries (arrays are overwritten)."""
        lpm = self.maps[abi.MAP_FW_LPM]
        for raw in list(lpm.raw_keys()):
            if raw[4] == gen:
                lpm.delete(abi.FwLpmKey.from_buffer_copy(raw))
        ifp = self.maps[abi.MAP_FW_IFPROTO]
        for raw in list(ifp.raw_keys()):
            key = abi.FwIfprotoKey.from_buffer_copy(raw)
            if key.gen == gen:
                ifp.delete(key)
        bitmaps = self.maps[abi.MAP_FW_BITMAPS]
        lo, hi = gen * _GEN_BITMAPS, (gen + 1) * _GEN_BITMAPS
        for raw in list(bitmaps.raw_keys()):
            (bid,) = struct.unpack("<I", raw)
            if lo <= bid < hi and bid != abi.FW_EMPTY_BITMAP:
                bitmaps.delete(ctypes.c_uint32(bid))


def _decode(r: abi.FwRule, names: dict[int, str], slots: dict[int, str]) -> Rule:
    def addr(flag: abi.FwRuleFlag, raw: Any, plen: int, slot: int) -> str | None:
        if r.flags & flag:
            return f"@{slots.get(slot, f'slot{slot}')}"
        return _net(r.family, raw, plen)

    src = addr(abi.FwRuleFlag.SRC_SET, r.src, r.src_len, r.src_set)
    dst = addr(abi.FwRuleFlag.DST_SET, r.dst, r.dst_len, r.dst_set)
    sport = (r.sport_lo, r.sport_hi) if r.flags & abi.FwRuleFlag.SPORT else None
    dport = (r.dport_lo, r.dport_hi) if r.flags & abi.FwRuleFlag.DPORT else None
    icmp_type = r.sport_lo if r.flags & abi.FwRuleFlag.ICMP_TYPE else None
    return Rule(
        action={v: k for k, v in ACTIONS.items()}[abi.FwAction(r.action)],
        src=src,
        dst=dst,
        proto=r.proto if r.flags & abi.FwRuleFlag.PROTO else None,
        sport=sport,
        dport=dport,
        icmp_type=icmp_type,
        iface=names.get(r.ifindex, f"ifindex:{r.ifindex}") if r.ifindex else None,
        pps=r.pps,
        bps=r.bps,
        burst=r.burst_pkts,
        burst_bytes=r.burst_bytes,
        block_after=r.block_after,
        block_seconds=r.block_ns / 1e9,
        id=r.id,
    )


def _net(family: int, raw: Any, plen: int) -> str | None:
    if plen == 0xFF:  # no prefix of this direction
        return None
    n = 4 if family == 4 else 16
    return str(ipaddress.ip_network((bytes(raw[:n]), plen)))


# -- the compiler: rules -> per-field bitmaps ----------------------------------


def _summary(bits: int) -> int:
    """One bit per non-zero 64-bit word of ``bits``."""
    summary = 0
    mv = memoryview(bits.to_bytes(abi.FW_WORDS * 8, "little")).cast("Q")
    for w in range(abi.FW_WORDS):
        if mv[w]:
            summary |= 1 << w
    return summary


def _bitmap_bytes(bits: int, anchor: int) -> bytes:
    n = abi.FW_SUMMARY_WORDS * 8
    return (
        _summary(bits).to_bytes(n, "little")
        + _summary(anchor).to_bytes(n, "little")
        + bits.to_bytes(abi.FW_WORDS * 8, "little")
    )


class _Bitmaps:
    def __init__(self, gen: int) -> None:
        self.base = gen * _GEN_BITMAPS
        self.ids: dict[tuple[int, int], int] = {}

    def id(self, bits: int, anchored: int = 0) -> int:
        """The id of ``bits``, the rules ``anchored`` on its field marked."""
        key = (bits, bits & anchored)
        found = self.ids.get(key)
        if found is None:
            found = self.base + len(self.ids)
            if found >= self.base + _GEN_BITMAPS - 1:
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


def _compile(
    rules: list[Rule],
    policies: dict[str, str],
    links: dict[str, int],
    set_slots: dict[str, int],
    gen: int,
    policy_ids: dict[str, int],
) -> _Compiled:
    out = _Compiled()
    bm = _Bitmaps(gen)
    entries: list[Rule] = list(rules)
    for iface, action in sorted(policies.items()):
        if action == "drop":
            entries.append(Rule(action="drop", iface=iface, id=policy_ids[iface]))
    n = len(entries)
    for pos, r in enumerate(entries):
        out.rules.append(_encode(r, pos >= len(rules), links, set_slots))
    anchors = _anchors(entries)

    # interface x protocol
    wild_if = wild_p = 0
    by_if: dict[int, int] = {}
    by_p: dict[int, int] = {}
    for pos, r in enumerate(entries):
        bit = 1 << pos
        if r.iface:
            index = _known_ifindex(r.iface, links)
            by_if[index] = by_if.get(index, 0) | bit
        else:
            wild_if |= bit
        if r.proto is not None:
            by_p[r.proto] = by_p.get(r.proto, 0) | bit
        else:
            wild_p |= bit
    for ifindex in [0, *by_if]:
        for proto in [abi.FW_ANY_PROTO, *by_p]:
            bits = (wild_if | by_if.get(ifindex, 0)) & (wild_p | by_p.get(proto, 0))
            key = abi.FwIfprotoKey(gen=gen, ifindex=ifindex, proto=proto)
            out.ifproto.append((bytes(key), bm.id(bits, anchors["ifproto"])))

    # source and destination prefixes
    for d, attr in ((0, "src"), (1, "dst")):
        wild = 0
        nets: dict[int, dict[tuple[int, int], int]] = {4: {}, 6: {}}  # family -> (net int, len) -> bits
        for pos, r in enumerate(entries):
            value = getattr(r, attr)
            if not value or value.startswith("@"):
                wild |= 1 << pos
                continue
            net = ipaddress.ip_network(value)
            k = (int(net.network_address), net.prefixlen)
            nets[net.version][k] = nets[net.version].get(k, 0) | (1 << pos)
        for fam, bits_of in nets.items():
            width = 32 if fam == 4 else 128
            bits_of.setdefault((0, 0), 0)
            lens = sorted({plen for _, plen in bits_of})
            for (addr, plen), _ in bits_of.items():
                covered = wild
                for ln in lens:
                    if ln > plen:
                        break
                    mask = ((1 << ln) - 1) << (width - ln) if ln else 0
                    covered |= bits_of.get((addr & mask, ln), 0)
                key = _LPM_KEY.pack(
                    32 + plen, bytes((gen, d, fam, 0)), addr.to_bytes(width // 8, "big").ljust(16, b"\0")
                )
                out.lpm.append((key, bm.id(covered, anchors[attr])))

    # ports: elementary intervals of every range
    for attr in ("sport", "dport"):
        wild = 0
        starts: dict[int, int] = {}
        for pos, r in enumerate(entries):
            rng = getattr(r, attr)
            if attr == "sport" and r.icmp_type is not None:  # the ICMP types' own slots
                rng = (abi.FW_ICMP_SLOT + r.icmp_type,) * 2
            if rng is None:
                wild |= 1 << pos
                continue
            starts[rng[0]] = starts.get(rng[0], 0) ^ (1 << pos)
            starts[rng[1] + 1] = starts.get(rng[1] + 1, 0) ^ (1 << pos)
        ids = [0] * abi.FW_PORT_SLOTS
        active = 0
        points = sorted(set(starts) | {0, abi.FW_NOPORT, abi.FW_ICMP_SLOT, abi.FW_PORT_SLOTS})
        for a, b in zip(points, points[1:], strict=False):
            active ^= starts.get(a, 0)
            ids[a:b] = [bm.id(wild | active, anchors[attr])] * (b - a)
        ids[abi.FW_NOPORT] = bm.id(wild, anchors[attr])
        out.ports.append(ids)

    # set references: the rules that need each (set, direction) to match
    refs: dict[tuple[int, int], int] = {}
    for pos, r in enumerate(entries):
        for d, value in ((0, r.src), (1, r.dst)):
            if value and value.startswith("@"):
                k = (set_slots[value[1:]], d)
                refs[k] = refs.get(k, 0) | (1 << pos)
    if len(refs) > abi.FW_MAX_REFS:
        raise UsageError(f"rules reference {len(refs)} (set, direction) pairs, at most {abi.FW_MAX_REFS}")
    named = (abi.FW_NAMES_IFACE if by_if else 0) | (abi.FW_NAMES_PROTO if by_p else 0)
    g = abi.FwGen(nrules=n, nrefs=len(refs), has_block=int(any(r.block_after for r in entries)), named=named)
    for i, ((slot, d), bits) in enumerate(refs.items()):
        g.ref_slot[i] = slot
        g.ref_dir[i] = d
        g.ref_need[i] = bm.id(bits)
    out.gen = g
    out.bitmaps = {i: _bitmap_bytes(bits, anchor) for (bits, anchor), i in bm.ids.items()}
    return out


def _encode(r: Rule, policy: bool, links: dict[str, int], set_slots: dict[str, int]) -> abi.FwRule:
    e = abi.FwRule(id=r.id, action=ACTIONS[r.action], family=r.family)
    e.flags = abi.FwRuleFlag.POLICY if policy else 0
    if r.proto is not None:
        e.flags |= abi.FwRuleFlag.PROTO
        e.proto = r.proto
    for attr, flag in (("src", abi.FwRuleFlag.SRC_SET), ("dst", abi.FwRuleFlag.DST_SET)):
        value = getattr(r, attr)
        if value and value.startswith("@"):
            e.flags |= flag
            setattr(e, f"{attr}_set", set_slots[value[1:]])
            setattr(e, f"{attr}_len", 0xFF)
        elif value:
            net = ipaddress.ip_network(value)
            getattr(e, attr)[: len(net.network_address.packed)] = list(net.network_address.packed)
            setattr(e, f"{attr}_len", net.prefixlen)
        else:
            setattr(e, f"{attr}_len", 0xFF)
    e.sport_lo, e.sport_hi = r.sport or (0, 65535)
    e.dport_lo, e.dport_hi = r.dport or (0, 65535)
    # a range, even 0-65535, matches only protocols with ports: say so
    e.flags |= (abi.FwRuleFlag.SPORT if r.sport else 0) | (abi.FwRuleFlag.DPORT if r.dport else 0)
    if r.icmp_type is not None:
        e.flags |= abi.FwRuleFlag.ICMP_TYPE
        e.sport_lo = e.sport_hi = r.icmp_type
    e.ifindex = _known_ifindex(r.iface, links) if r.iface else 0
    if r.action == "limit":
        e.pps, e.bps = r.pps, r.bps
        e.burst_pkts = r.burst or r.pps
        e.burst_bytes = r.burst_bytes or r.bps
        if r.pps:
            e.pkt_ns = 10**9 // r.pps
            e.pkt_tau = e.burst_pkts * e.pkt_ns
        if r.bps:
            e.byte_tau = e.burst_bytes * 10**9 // r.bps
        e.block_after = r.block_after
        e.block_ns = int(r.block_seconds * 1e9)
    return e

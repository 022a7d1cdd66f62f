"""A firewall rule: its fields (declared once: parsing, config keys, CLI options), validation, description."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import ipaddress
import json
import math
import os
import socket
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..dataplane import abi, abi_fw
from ..errors import UsageError

ACTIONS = {"allow": abi_fw.FwAction.ALLOW, "drop": abi_fw.FwAction.DROP, "limit": abi_fw.FwAction.LIMIT}
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


@functools.lru_cache(maxsize=1 << 16)
def prefix_parts(text: str) -> tuple[int, int, int]:
    """(family, network as an int, length) of a rule's prefix (``Rule.src``
    or ``dst``, normalized when parsed): parsed once, however many stages
    of the compiler read it."""
    addr, _, plen = text.partition("/")
    raw = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
    return (6 if len(raw) == 16 else 4), int.from_bytes(raw, "big"), int(plen) if plen else len(raw) * 8


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


def _norm(value: str | None) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return value
    return str(ipaddress.ip_network(value, strict=False))


_NUMBER = (int, float)
_PORTLIKE = (str, int)  # a name or a number, a port or a range
_KINDS = {(str,): "a string", (int,): "an integer", _NUMBER: "a number", _PORTLIKE: "a string or an integer"}


def _field(
    default: Any, help: str, parse: Any = None, *, text: bool = False, accepts: tuple[type, ...] = (str,), **cli: Any
) -> Any:
    """A rule field an operator gives: ``help`` and ``cli`` (flag, type,
    metavar, choices) make its option, its name is its config key, ``parse``
    turns what was given into the field's value (None: Rule.parse does),
    ``accepts`` are the types a config file may give it in."""
    meta = {"help": help, "parse": parse, "text": text, "accepts": accepts, "cli": cli}
    return field(default=default, metadata=meta)


@dataclass
class Rule:
    """One rule. ``src``/``dst`` are prefixes or ``@set``; ports are ranges."""

    action: str = _field("drop", "", str, choices=tuple(ACTIONS))
    src: str | None = _field(None, "source prefix, or @SET", _norm, text=True)
    dst: str | None = _field(None, "destination prefix, or @SET", _norm, text=True)
    proto: int | None = _field(None, "tcp, udp, icmp, icmpv6, sctp or a number", _proto, text=True, accepts=_PORTLIKE)
    sport: tuple[int, int] | None = _field(
        None, "source port or range LOW-HIGH", lambda v: _ports(v, "source port"), text=True, accepts=_PORTLIKE
    )
    dport: tuple[int, int] | None = _field(
        None,
        "destination port or range LOW-HIGH",
        lambda v: _ports(v, "destination port"),
        text=True,
        accepts=_PORTLIKE,
    )
    # with proto icmp or icmpv6; parsed once the protocol is known
    icmp_type: int | None = _field(
        None,
        "with --proto icmp/icmpv6: a type, by number or name (echo-request, ...)",
        None,
        text=True,
        accepts=_PORTLIKE,
    )
    iface: str | None = _field(None, "ingress interface", lambda v: v or None, text=True)
    pps: int = _field(0, "limit: packets per second per source", int, type=int, accepts=(int,))
    bps: int = _field(0, "limit: bytes per second per source", int, type=int, accepts=(int,))
    burst: int = _field(0, "limit: burst in packets (default: one second's)", int, type=int, accepts=(int,))
    burst_bytes: int = _field(0, "limit: burst in bytes (default: one second's)", int, type=int, accepts=(int,))
    block_after: int = _field(0, "limit: block a source after N over-limit pkts/s", int, type=int, accepts=(int,))
    block_seconds: float = _field(
        0.0, "limit: how long a block lasts", float, type=float, flag="--block-for", metavar="SECONDS", accepts=_NUMBER
    )
    id: int = 0  # stable, assigned when added (not given)

    @classmethod
    def parse(cls, **given: Any) -> Rule:
        """A validated rule from what an operator gave (RULE_FIELDS, as
        text or numbers); raises UsageError with a one-line message."""
        unknown = set(given) - set(RULE_FIELDS)
        if unknown:
            raise TypeError(f"Rule.parse() got unexpected keyword(s) {', '.join(sorted(unknown))}")
        empty = [
            name
            for name, f in RULE_FIELDS.items()
            if f.metadata["text"] and given.get(name) is not None and str(given[name]).strip() == ""
        ]
        if empty:
            # an empty variable in a script must not become "match everything"
            raise UsageError(f"empty value for {', '.join(empty)}")
        action = given.get("action", "drop")
        if action not in ACTIONS:
            raise UsageError(f"unknown action {action!r} (allow, drop or limit)")
        fams = set()
        for what, value in (("source", given.get("src")), ("destination", given.get("dst"))):
            if value and not value.startswith("@"):
                fams.add(_prefix(value, what).version)
            elif value and not value[1:]:
                raise UsageError(f"empty set name in {what} {value!r}")
        if len(fams) > 1:
            raise UsageError("source and destination prefixes are of different families")
        parsers = {name: f.metadata["parse"] for name, f in RULE_FIELDS.items() if f.metadata["parse"]}
        rule = cls(**{name: parse(given[name]) for name, parse in parsers.items() if name in given})
        if rule.proto is not None and rule.proto not in abi.PORT_PROTOS and (rule.sport or rule.dport):
            raise UsageError(f"protocol {rule.proto} has no ports")
        if given.get("icmp_type") is not None:
            rule.icmp_type = _icmp_type(given["icmp_type"], rule.proto)
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
                return prefix_parts(value)[0]
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


# The fields an operator gives, in order: the config keys, the options of
# `firewall add`, the keywords of Rule.parse().
RULE_FIELDS = {f.name: f for f in dataclasses.fields(Rule) if f.metadata}


def wrong_kind(name: str, value: Any) -> str | None:
    """What a config file's value for field ``name`` must be ("an integer"...), if it is not."""
    accepts = RULE_FIELDS[name].metadata["accepts"]
    return _KINDS[accepts] if isinstance(value, bool) or not isinstance(value, accepts) else None


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per rule field (``--block-for`` is block_seconds)."""
    for name, f in RULE_FIELDS.items():
        cli = dict(f.metadata["cli"])
        flag = cli.pop("flag", "--" + name.replace("_", "-"))
        help_ = f.metadata["help"] or None
        default = f.default if f.default is not None else None
        parser.add_argument(flag, dest=name, default=default, help=help_, **cli)


def rule_from_args(args: argparse.Namespace) -> Rule:
    return Rule.parse(**{name: getattr(args, name) for name in RULE_FIELDS})


def rule_from_config(i: int, spec: Any) -> Rule:
    """Rule ``i`` of a config file's ``rules`` list (a table of RULE_FIELDS keys)."""
    if not isinstance(spec, dict):
        raise UsageError(f"rule {i}: not a table")
    unknown = set(spec) - set(RULE_FIELDS)
    if unknown:
        raise UsageError(f"rule {i}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        kw = {k: (str(v) if k in ("sport", "dport") else v) for k, v in spec.items()}
        return Rule.parse(**kw)
    except UsageError as e:
        raise UsageError(f"rule {i}: {e}") from None


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


def parse_prefix_lines(lines: Iterable[str], what: str = "line") -> list[tuple[int, bytes, int]]:
    """(family, address bytes, prefix length) per line; blanks and # comments
    skipped; an error names the ``what`` (line, entry) by its number. A
    million lines in well under a second: the common line takes no detour."""
    out = []
    append, pton = out.append, socket.inet_pton
    for n, line in enumerate(lines, 1):
        if "#" in line:
            line = line.split("#", 1)[0]
        text = line.strip()
        if not text:
            continue
        addr, _, plen_s = text.partition("/")
        try:
            if ":" in addr:
                fam, raw, bits = 6, pton(socket.AF_INET6, addr), 128
            else:
                fam, raw, bits = 4, pton(socket.AF_INET, addr), 32
            plen = int(plen_s) if plen_s else bits
        except (OSError, ValueError):
            raise UsageError(f"{what} {n}: bad prefix {text!r}") from None
        if not 0 <= plen <= bits:
            raise UsageError(f"{what} {n}: bad prefix {text!r}")
        append((fam, raw, plen))
    return out


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

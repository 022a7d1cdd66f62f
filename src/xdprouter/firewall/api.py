"""The firewall's API: ``Firewall``, the rules, sets, policies and blocks of the xdprouter attached in this namespace.

State lives only in the attached program's maps (found again through the
interfaces, dataplane/instance.py): rules last as long as the program is
attached. Every change builds a complete new *generation* of the lookup
tables beside the live one and then flips ``xdpr_fw_state.gen`` with one
write; the old generation is removed only after an RCU grace period
(membarrier), when no frame can still be using it (tables.py).

>>> fw = Firewall()                                       # doctest: +SKIP
>>> fw.add(Rule.parse(action="drop", src="192.0.2.0/24"))   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import netlink
from ..dataplane import instance
from ..errors import UsageError
from .compiler import is_gone
from .rules import Rule, RuleCounters, SetInfo, load_config_file, parse_prefix_lines, rule_from_config
from .tables import Tables

NOT_ATTACHED = "xdprouter is not attached in this namespace: attach it first"


class Firewall:
    """The firewall of the xdprouter attached in the caller's namespace."""

    @contextlib.contextmanager
    def _open(self, locked: bool = True) -> Iterator[Tables]:
        with instance.attached(lock=locked, missing=NOT_ATTACHED) as inst:
            yield Tables(inst)

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
            for _, addr, blk in st.blocks():
                if blk is not None and blk.until > now:
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
        if not is_gone(iface):  # "ifindex:N": a deleted interface's policy (check() decides)
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
        rules = [rule_from_config(i, spec) for i, spec in enumerate(config.get("rules", []))]
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

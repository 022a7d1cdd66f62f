"""The daemon's configuration file (TOML): one schema, checked in full
before anything is applied, every error one line naming the file, the line
and the key.

```toml
[router]
interfaces = ["r0", "eth*"]   # names (must exist) or globs (may match later)
mode = "auto"                 # native | generic | auto
on_exit = "keep"              # keep | detach: what SIGTERM leaves behind
recheck_interval = 30.0       # seconds between full re-checks (safety net)
sysctl_poll_interval = 0.02   # seconds between sysctl reads

[metrics]
listen = "127.0.0.1:9437"     # Prometheus /metrics (no section: no server)

[firewall]                    # the `xdprouter firewall load` format (docs/firewall.md)

[[steer.rules]]               # steering rules, in order (docs/userspace.md)
action = "cpu"                # cpu | xsk
cpu = 1
proto = "udp"                 # and any of the firewall's match keys
dport = 5353
```

The ``[firewall]`` section is applied by the firewall's own loader
(``Firewall.load_config``); this module checks it first with the public
``Rule.parse`` so that a refused file changes nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import netlink
from .errors import UsageError
from .firewall import Rule
from .firewall.rules import RULE_FIELDS, parse_prefix_lines, wrong_kind
from .steer.rules import CONFIG_KEYS as STEER_KEYS
from .steer.rules import MATCH_FIELDS, SteerRule, online_cpus
from .steer.rules import rule_from_config as steer_rule

MODES = ("native", "generic", "auto")
ON_EXIT = ("keep", "detach")

_TOP = {"router", "metrics", "firewall", "steer"}
_ROUTER = {"interfaces", "mode", "on_exit", "recheck_interval", "sysctl_poll_interval"}
_METRICS = {"listen"}
_FIREWALL = {"policy", "sets", "rules"}
_STEER = {"rules"}
# the keys of a rule table: the rule's fields (firewall/rules.py)
_RULE_KEYS = set(RULE_FIELDS)
_GONE = re.compile(r"ifindex:\d+")


class ConfigError(UsageError):
    """A configuration file refused: ``FILE:LINE: KEY: why``."""


@dataclass
class Config:
    path: Path
    interfaces: list[str]
    mode: str = "auto"
    on_exit: str = "keep"
    recheck_interval: float = 30.0
    sysctl_poll_interval: float = 0.02
    metrics_listen: tuple[str, int] | None = None
    firewall: dict[str, Any] | None = None  # the [firewall] section, None: leave the firewall alone
    firewall_rules: list[Rule] = field(default_factory=list)
    firewall_sets: dict[str, list[str]] = field(default_factory=dict)  # name -> normalised prefixes
    firewall_policies: dict[str, str] = field(default_factory=dict)
    steer: bool = False  # a [steer] section: its rules are the steering rules; none: leave them alone
    steer_rules: list[SteerRule] = field(default_factory=list)

    def matches(self, name: str) -> bool:
        """Does the interface ``name`` belong to this router (name or glob)?"""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.interfaces)

    def firewall_digest(self) -> str:
        """What the [firewall] section amounts to (set files read), for
        telling whether a reload changes the firewall at all."""
        content = {
            "rules": [_rule_key(r) for r in self.firewall_rules],
            "sets": self.firewall_sets,
            "policies": self.firewall_policies,
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _rule_key(rule: Rule) -> dict[str, Any]:
    out = rule.as_dict()
    out.pop("id", None)
    return out


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class _Lines:
    """Where each key of a TOML text is (tomllib does not say): dotted key
    path -> line number, arrays of tables as ``rules[N]``."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
    _KEY = re.compile(
        r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
    )

    def __init__(self, text: str) -> None:
        self.where: dict[str, int] = {}
        counts: dict[str, int] = {}
        table = ""
        for n, line in enumerate(text.splitlines(), 1):
            if m := self._HEADER.match(line):
                path = ".".join(_unquote(p) for p in m.group(2).split("."))
                if m.group(1) == "[[":
                    counts[path] = counts.get(path, -1) + 1
                    path = f"{path}[{counts[path]}]"
                table = path
                self.where.setdefault(table, n)
            elif m := self._KEY.match(line):
                key = ".".join(_unquote(p) for p in m.group(1).split("."))
                self.where.setdefault(f"{table}.{key}" if table else key, n)

    def line(self, path: str) -> int | None:
        while path:
            if path in self.where:
                return self.where[path]
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return None


def _unquote(part: str) -> str:
    part = part.strip()
    return part[1:-1] if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'" else part


class _Checker:
    def __init__(self, path: Path, lines: _Lines) -> None:
        self.path = path
        self.lines = lines

    def fail(self, key: str, why: str) -> ConfigError:
        n = self.lines.line(key)
        where = f"{self.path}:{n}" if n else str(self.path)
        return ConfigError(f"{where}: {key}: {why}")

    def table(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, not {_type(value)}")
        for k in value:
            if k not in allowed:
                raise self.fail(f"{key}.{k}" if key else k, f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, key: str, choices: tuple[str, ...] = ()) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {_type(value)}")
        if choices and value not in choices:
            raise self.fail(key, f"unknown value {value!r} ({', '.join(choices)})")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, not {_type(value)}")
        if not value > 0:
            raise self.fail(key, "must be greater than 0")
        return float(value)


def _type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "a table" if isinstance(value, dict) else type(value).__name__
    )


def load(path: str | Path, *, check_interfaces: bool = True) -> Config:
    """Read and check a configuration file; raise ConfigError (one line)
    for the first problem. With ``check_interfaces`` the interfaces named
    literally (router, rules, policies) must exist in the caller's namespace."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e).splitlines()[0]
        at = re.search(r"\(at line (\d+), column \d+\)", msg)
        raise ConfigError(f"{path}:{at.group(1)}: {msg}" if at else f"{path}: {msg}") from None
    c = _Checker(path, _Lines(text))
    c.table(data, "", _TOP)
    if "router" not in data:
        raise c.fail("router", "missing: the [router] section names the interfaces")
    router = c.table(data["router"], "router", _ROUTER)
    if "interfaces" not in router:
        raise c.fail("router.interfaces", "missing (a list of names or globs)")
    ifaces = router["interfaces"]
    if not isinstance(ifaces, list) or not ifaces or not all(isinstance(i, str) and i for i in ifaces):
        raise c.fail("router.interfaces", "must be a non-empty array of interface names or globs")
    cfg = Config(path=path, interfaces=list(ifaces))
    if "mode" in router:
        cfg.mode = c.string(router["mode"], "router.mode", MODES)
    if "on_exit" in router:
        cfg.on_exit = c.string(router["on_exit"], "router.on_exit", ON_EXIT)
    for key in ("recheck_interval", "sysctl_poll_interval"):
        if key in router:
            setattr(cfg, key, c.number(router[key], f"router.{key}"))
    if "metrics" in data:
        metrics = c.table(data["metrics"], "metrics", _METRICS)
        if "listen" in metrics:
            cfg.metrics_listen = _listen(c, c.string(metrics["listen"], "metrics.listen"))
    if "firewall" in data:
        _firewall(c, cfg, c.table(data["firewall"], "firewall", _FIREWALL))
    if "steer" in data:
        _steer(c, cfg, c.table(data["steer"], "steer", _STEER))
    if check_interfaces:
        _check_interfaces(c, cfg)
    return cfg


def _listen(c: _Checker, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise c.fail("metrics.listen", f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9437 or [::1]:9437)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise c.fail("metrics.listen", f"{host!r} is not an IP address") from None
    return host, int(port)


def _firewall(c: _Checker, cfg: Config, section: dict[str, Any]) -> None:
    cfg.firewall = section
    policy = c.table(section.get("policy", {}), "firewall.policy", set(section.get("policy", {})))
    for iface, action in policy.items():
        cfg.firewall_policies[iface] = c.string(action, f"firewall.policy.{iface}", ("allow", "drop"))
    sets = c.table(section.get("sets", {}), "firewall.sets", set(section.get("sets", {})))
    for name, spec in sets.items():
        key = f"firewall.sets.{name}"
        if isinstance(spec, list):
            lines = spec
        elif isinstance(spec, dict) and set(spec) == {"file"}:
            file = cfg.path.parent / c.string(spec["file"], f"{key}.file")
            try:
                lines = file.read_text().splitlines()
            except OSError as e:
                raise c.fail(f"{key}.file", f"cannot read {file}: {e.strerror or e}") from None
        elif isinstance(spec, dict) and set(spec) == {"prefixes"}:
            lines = spec["prefixes"]
            if not isinstance(lines, list):
                raise c.fail(f"{key}.prefixes", f"must be an array of prefixes, not {_type(lines)}")
        else:
            raise c.fail(key, "give an array of prefixes, prefixes = [...] or file = PATH")
        cfg.firewall_sets[name] = _prefixes(c, key, lines)
    rules = section.get("rules", [])
    if not isinstance(rules, list):
        raise c.fail("firewall.rules", f"must be an array of tables ([[firewall.rules]]), not {_type(rules)}")
    for i, spec in enumerate(rules):
        cfg.firewall_rules.append(_rule(c, f"firewall.rules[{i}]", spec))
    known = set(cfg.firewall_sets)
    for i, rule in enumerate(cfg.firewall_rules):
        for what, ref in (("src", rule.src), ("dst", rule.dst)):
            if ref and ref.startswith("@") and ref[1:] not in known:
                raise c.fail(f"firewall.rules[{i}].{what}", f"unknown set {ref[1:]!r} (not in [firewall.sets])")


def _steer(c: _Checker, cfg: Config, section: dict[str, Any]) -> None:
    """Steering rules: their fields, their CPUs (online here, one queue size
    each) and their sets (the firewall's, from [firewall.sets])."""
    cfg.steer = True
    rules = section.get("rules", [])
    if not isinstance(rules, list):
        raise c.fail("steer.rules", f"must be an array of tables ([[steer.rules]]), not {_type(rules)}")
    online, qsizes = online_cpus(), {}
    for i, spec in enumerate(rules):
        key = f"steer.rules[{i}]"
        spec = c.table(spec, key, set(STEER_KEYS))
        for k, v in spec.items():
            if k in MATCH_FIELDS and (kind := wrong_kind(k, v)):
                raise c.fail(f"{key}.{k}", f"must be {kind}, not {_type(v)}")
        try:
            rule = steer_rule(key, spec)
        except UsageError as e:
            raise c.fail(key, str(e).removeprefix(f"{key}: ")) from None
        if rule.cpu is not None and rule.cpu not in online:
            raise c.fail(f"{key}.cpu", f"CPU {rule.cpu} is not online")
        if rule.cpu is not None and rule.queue_size is not None:
            if qsizes.setdefault(rule.cpu, rule.queue_size) != rule.queue_size:
                raise c.fail(f"{key}.queue_size", f"CPU {rule.cpu} already has queue size {qsizes[rule.cpu]}")
        for what, ref in (("src", rule.match.src), ("dst", rule.match.dst)):
            if ref and ref.startswith("@") and ref[1:] not in cfg.firewall_sets:
                raise c.fail(f"{key}.{what}", f"unknown set {ref[1:]!r} (not in [firewall.sets])")
        cfg.steer_rules.append(rule)


def _prefixes(c: _Checker, key: str, lines: list[Any]) -> list[str]:
    for n, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise c.fail(key, f"entry {n} must be a string, not {_type(line)}")
    try:
        parsed = parse_prefix_lines(lines, what="entry")
    except UsageError as e:
        raise c.fail(key, str(e)) from None
    return sorted({str(ipaddress.ip_network((raw, plen), strict=False)) for _, raw, plen in parsed})


def _rule(c: _Checker, key: str, spec: Any) -> Rule:
    spec = c.table(spec, key, _RULE_KEYS)
    for k, v in spec.items():
        kind = wrong_kind(k, v)
        if kind:
            raise c.fail(f"{key}.{k}", f"must be {kind}, not {_type(v)}")
    try:
        return Rule.parse(**{k: (str(v) if k in ("sport", "dport") else v) for k, v in spec.items()})
    except UsageError as e:
        raise c.fail(key, str(e)) from None


def _check_interfaces(c: _Checker, cfg: Config) -> None:
    names = {link.name for link in netlink.links()}
    for i, pattern in enumerate(cfg.interfaces):
        if not is_glob(pattern) and pattern not in names:
            raise c.fail("router.interfaces", f"unknown interface {pattern!r} (entry {i}; a glob may match later)")
    for i, rule in enumerate(cfg.firewall_rules):
        if rule.iface and rule.iface not in names and not _GONE.fullmatch(rule.iface):
            raise c.fail(f"firewall.rules[{i}].iface", f"unknown interface {rule.iface!r}")
    for iface in cfg.firewall_policies:
        if iface not in names and not _GONE.fullmatch(iface):
            raise c.fail(f"firewall.policy.{iface}", f"unknown interface {iface!r}")
    for i, steer in enumerate(cfg.steer_rules):
        if steer.match.iface and steer.match.iface not in names:
            raise c.fail(f"steer.rules[{i}].iface", f"unknown interface {steer.match.iface!r}")

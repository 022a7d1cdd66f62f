"""What the fast path bypasses, read from the namespace: sysctls, netfilter."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

_SYSCTL = Path("/proc/sys/net")


def sysctl(path: str, default: int = 0) -> int:
    """An integer sysctl of the caller's namespace, e.g. ``ipv4/conf/all/rp_filter``."""
    try:
        return int((_SYSCTL / path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _conf(family: str, ifname: str, key: str) -> int:
    return sysctl(f"{family}/conf/{ifname.replace('.', '/')}/{key}")


def send_redirects(ifname: str) -> bool:
    # IN_DEV_TX_REDIRECTS is IN_DEV_ORCONF: all || the interface
    return bool(_conf("ipv4", "all", "send_redirects") or _conf("ipv4", ifname, "send_redirects"))


def ipv6_forwarding(ifname: str) -> bool:
    """ip6_forward() needs all.forwarding; ipv6_rcv() drops on disable_ipv6."""
    return bool(_conf("ipv6", "all", "forwarding")) and not _conf("ipv6", ifname, "disable_ipv6")


def preempt_rt() -> bool:
    """A PREEMPT_RT kernel (``/sys/kernel/realtime``): NAPI runs in threads
    that may preempt each other on one CPU."""
    try:
        return Path("/sys/kernel/realtime").read_text().strip() == "1"
    except OSError:
        return False


def rp_filter(ifname: str) -> int:
    # IN_DEV_RPFILTER is IN_DEV_MAXCONF: the larger of all and the interface
    return max(_conf("ipv4", "all", "rp_filter"), _conf("ipv4", ifname, "rp_filter"))


_BYPASSED_HOOKS = {"prerouting", "forward", "postrouting"}


def netfilter_forward_chains() -> list[str]:
    """nftables chains (iptables-nft included) on the hooks forwarded frames
    would cross, that have at least one rule or a drop policy."""
    nft = shutil.which("nft")
    if not nft:
        return []
    try:
        out = subprocess.run([nft, "-j", "list", "ruleset"], capture_output=True, text=True, timeout=10, check=True)
        ruleset = json.loads(out.stdout or "{}").get("nftables", [])
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    chains: dict[tuple[str, str, str], bool] = {}
    for item in ruleset:
        chain = item.get("chain")
        if chain and chain.get("hook") in _BYPASSED_HOOKS and chain.get("family") in ("ip", "ip6", "inet"):
            key = (chain["family"], chain["table"], chain["name"])
            chains[key] = chains.get(key, False) or chain.get("policy") == "drop"
        rule = item.get("rule")
        if rule:
            key = (rule.get("family"), rule.get("table"), rule.get("chain"))
            if key in chains:
                chains[key] = True
    return [f"{f} {t} {c}" for (f, t, c), used in chains.items() if used]


def _routes(family: str, *selector: str) -> list[list[str]]:
    """`ip -o route show table all`, split in words: iproute2 filters and
    prints a full Internet table in about a second, where parsing it message
    by message in Python takes half a minute."""
    try:
        out = subprocess.run(
            ["ip", family, "-o", "route", "show", "table", "all", *selector],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split() for line in out.splitlines()]


def routes_with_unlocked_mtu() -> list[str]:
    """Routes carrying an ``mtu`` metric that is not locked, in every table.

    Linux forwarding honours such an MTU; bpf_fib_lookup() only honours a
    locked one (``mtu lock N``), so the two disagree on these routes.
    """
    found = []
    for family in ("-4", "-6"):
        for words in _routes(family):
            if "mtu" not in words[:-1]:
                continue
            value = words[words.index("mtu") + 1]
            if value != "lock":
                table = words[words.index("table") + 1] if "table" in words[:-1] else "main"
                found.append(f"{words[0]} mtu {value} (table {table})")
    return found


def has_custom_local_routes() -> bool:
    """IPv4 routes of type local that a user added, not the kernel for an
    address (the kernel's fib_has_custom_local_routes)."""
    return any(_proto(words) != "kernel" for words in _routes("-4", "type", "local"))


def _proto(words: list[str]) -> str:
    return words[words.index("proto") + 1] if "proto" in words[:-1] else "boot"

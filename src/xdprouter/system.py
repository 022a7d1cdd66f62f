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

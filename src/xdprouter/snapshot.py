"""The attach-time snapshot: what the fast path needs that the FIB lookup does not give (addresses, MACs, sysctls)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from . import netlink, system
from .dataplane import abi
from .errors import UsageError


def iface_config(link: netlink.Link, slot: int, full_source_check: bool, native: bool) -> abi.IfaceConfig:
    """An attached interface's config: its stats slot, MAC and sysctl flags."""
    config = abi.IfaceConfig(slot=slot, flags=_flags(link, full_source_check, native))
    config.mac[:] = list(bytes(int(b, 16) for b in link.mac.split(":")))
    return config


def local4_table(addresses: Iterable[ipaddress.IPv4Address]) -> list[bytes]:
    """Slot -> address (network byte order, zero = empty) as ipv4_is_local() probes it."""
    table = [bytes(4)] * abi.LOCAL4_SLOTS
    for addr in sorted(addresses):
        if int(addr) == 0:
            continue
        home = abi.local4_slot(int(addr))
        for probe in range(abi.LOCAL4_PROBES):
            slot = (home + probe) % abi.LOCAL4_SLOTS
            if table[slot] == bytes(4):
                table[slot] = addr.packed
                break
        else:
            raise UsageError(f"too many IPv4 addresses for the martian-source table ({addr} does not fit)")
    return table


def _flags(link: netlink.Link, full_source_check: bool, native: bool) -> int:
    ifname = link.name
    flags = abi.IfaceFlag(0)
    # Only in native mode is every devmap redirect in the interface's NAPI
    # poll one of ours, which the route hint relies on; on PREEMPT_RT two
    # NAPI threads on one CPU could interleave in its per-CPU state
    # (docs/design.md).
    if native and not system.preempt_rt():
        flags |= abi.IfaceFlag.ROUTE_HINT
    if link.kind == "veth":
        flags |= abi.IfaceFlag.TX_VIA_DEVMAP
    if system.send_redirects(ifname):
        flags |= abi.IfaceFlag.SEND_REDIRECTS
    if system.ipv6_forwarding(ifname):
        flags |= abi.IfaceFlag.IPV6_FORWARDING
    rp_filter = system.rp_filter(ifname)
    if full_source_check or rp_filter:
        flags |= abi.IfaceFlag.SOURCE_CHECK_FULL
    if rp_filter == 1:
        flags |= abi.IfaceFlag.RP_FILTER_STRICT
    elif rp_filter == 2:
        flags |= abi.IfaceFlag.RP_FILTER_LOOSE
    return int(flags)


def full_source_check() -> bool:
    """Does fib_validate_source() take its full form in this namespace?"""
    return netlink.has_policy_rules() or system.has_custom_local_routes()


def bypass_warnings() -> list[str]:
    warnings: list[str] = []
    mtu_routes = system.routes_with_unlocked_mtu()
    if mtu_routes:
        shown = ", ".join(mtu_routes[:5]) + (f" and {len(mtu_routes) - 5} more" if len(mtu_routes) > 5 else "")
        warnings.append(
            f"routes with an unlocked mtu metric ({shown}): Linux honours that MTU when forwarding but the "
            "fast path's FIB lookup only honours a locked one, so oversize frames would be forwarded; "
            "lock it (ip route change ... mtu lock N) to make both agree (docs/operations.md)"
        )
    chains = system.netfilter_forward_chains()
    if chains:
        warnings.append(
            f"netfilter rules on the forwarding path ({'; '.join(chains)}) are bypassed by frames the fast "
            "path forwards: move them to xdprouter's firewall, or detach (docs/operations.md)"
        )
    return warnings

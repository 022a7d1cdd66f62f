"""The one module that speaks netlink (through pyroute2)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pyroute2 import IPRoute

from .errors import UsageError


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str


def links() -> list[Link]:
    """Every interface of the caller's network namespace."""
    with IPRoute() as ipr:
        return [
            Link(msg["index"], msg.get_attr("IFLA_IFNAME"), msg.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00")
            for msg in ipr.get_links()
        ]


def resolve(names: list[str]) -> list[Link]:
    """The links named, in order; an unknown name is a one-line error."""
    by_name = {link.name: link for link in links()}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise UsageError(f"unknown interface{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    return [by_name[n] for n in names]


def ipv4_addresses() -> set[ipaddress.IPv4Address]:
    """Every IPv4 address configured in the namespace."""
    with IPRoute() as ipr:
        return {
            ipaddress.IPv4Address(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"))
            for msg in ipr.get_addr(family=2)
        }


RTAX_MTU = 2


def routes_with_unlocked_mtu() -> list[str]:
    """Routes carrying an ``mtu`` metric that is not locked, in every table.

    Linux forwarding honours such an MTU; bpf_fib_lookup() only honours a
    locked one (``mtu lock N``), so the two disagree on these routes.
    """
    out = []
    with IPRoute() as ipr:
        for family in (2, 10):
            for msg in ipr.route("dump", family=family):
                metrics = msg.get_attr("RTA_METRICS")
                mtu = metrics.get_attr("RTAX_MTU") if metrics else None
                if mtu and not (metrics.get_attr("RTAX_LOCK") or 0) & (1 << RTAX_MTU):
                    dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == 2 else "::")
                    out.append(f"{dst}/{msg['dst_len']} mtu {mtu} (table {msg.get_attr('RTA_TABLE')})")
    return out


_DEFAULT_RULES = {(0, 255), (32766, 254), (32767, 253)}  # priority, table
RTN_LOCAL = 2
RTPROT_KERNEL = 2


def has_policy_rules() -> bool:
    """IPv4 rules beyond the three defaults (fib4_has_custom_rules)."""
    with IPRoute() as ipr:
        rules = {
            (msg.get_attr("FRA_PRIORITY") or 0, msg.get_attr("FRA_TABLE") or msg["table"])
            for msg in ipr.get_rules(family=2)
        }
    return bool(rules - _DEFAULT_RULES)


def has_custom_local_routes() -> bool:
    """IPv4 routes of type local added by a user, not for an address
    (fib_has_custom_local_routes)."""
    with IPRoute() as ipr:
        return any(msg["type"] == RTN_LOCAL and msg["proto"] != RTPROT_KERNEL for msg in ipr.route("dump", family=2))

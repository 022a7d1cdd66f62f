"""The one module that speaks netlink (through pyroute2)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from .errors import UsageError


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str
    kind: str = ""  # "veth", "vlan", ... ("" for a physical device)


def links() -> list[Link]:
    """Every interface of the caller's network namespace."""
    with IPRoute() as ipr:
        return [
            Link(
                msg["index"],
                msg.get_attr("IFLA_IFNAME"),
                msg.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00",
                _kind(msg),
            )
            for msg in ipr.get_links()
        ]


def _kind(msg: Any) -> str:
    info = msg.get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") or "") if info else ""


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


_DEFAULT_RULES = {(0, 255), (32766, 254), (32767, 253)}  # priority, table


def has_policy_rules() -> bool:
    """IPv4 rules beyond the three defaults (fib4_has_custom_rules)."""
    with IPRoute() as ipr:
        rules = {
            (msg.get_attr("FRA_PRIORITY") or 0, msg.get_attr("FRA_TABLE") or msg["table"])
            for msg in ipr.get_rules(family=2)
        }
    return bool(rules - _DEFAULT_RULES)


def ipv6_local_table() -> list[ipaddress.IPv6Network]:
    """The destinations of every route in the IPv6 local table (255)."""
    with IPRoute() as ipr:
        routes = ipr.get_routes(family=10, table=255)
        return [
            ipaddress.IPv6Network(f"{msg.get_attr('RTA_DST') or '::'}/{msg['dst_len']}", strict=False)
            for msg in routes
            if (msg.get_attr("RTA_TABLE") or msg["table"]) == 255
        ]

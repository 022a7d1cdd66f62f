"""The one module that speaks netlink (through pyroute2)."""

from __future__ import annotations

import ipaddress
import socket
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
    mtu: int = 0


def links() -> list[Link]:
    """Every interface of the caller's network namespace."""
    with IPRoute() as ipr:
        return [
            Link(
                msg["index"],
                msg.get_attr("IFLA_IFNAME"),
                msg.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00",
                _kind(msg),
                msg.get_attr("IFLA_MTU") or 0,
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


# -- change events (the daemon) ------------------------------------------

_RTN_LOCAL = 2  # route type local (rtm_type)
_LOCAL_TABLE = 255


@dataclass(frozen=True)
class Event:
    """One rtnetlink notification, reduced to what the fast path's snapshot
    depends on: ``kind`` is "link", "addr", "route" (type local or table
    local only) or "rule"; ``action`` "new" or "del"."""

    kind: str
    action: str
    ifindex: int = 0
    name: str = ""


class Events:
    """The caller's namespace's rtnetlink notifications: links, IPv4/IPv6
    addresses, routes and rules. A plain non-blocking netlink socket (every
    datagram queued is read, none is held back in a library's buffer),
    parsed with pyroute2's marshal. ``fileno()`` for select(); ``read()``
    drains what is queued; OSError ENOBUFS means events were lost."""

    def __init__(self) -> None:
        from pyroute2.netlink.rtnl import (
            RTMGRP_IPV4_IFADDR,
            RTMGRP_IPV4_ROUTE,
            RTMGRP_IPV4_RULE,
            RTMGRP_IPV6_IFADDR,
            RTMGRP_IPV6_ROUTE,
            RTMGRP_IPV6_RULE,
            RTMGRP_LINK,
        )
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl

        groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.bind((0, groups | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE))
        self._marshal = MarshalRtnl()

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> list[Event]:
        """Every event queued now; routes other than local ones (a BGP
        feed) are left out."""
        out = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return out
            for msg in self._marshal.parse(data):
                if event := _event(msg):
                    out.append(event)

    def close(self) -> None:
        self._sock.close()


def _event(msg: Any) -> Event | None:
    name = str(msg.get("event") or "")
    action = "del" if name.startswith("RTM_DEL") else "new"
    if name in ("RTM_NEWLINK", "RTM_DELLINK"):
        return Event("link", action, msg["index"], msg.get_attr("IFLA_IFNAME") or "")
    if name in ("RTM_NEWADDR", "RTM_DELADDR"):
        return Event("addr", action, msg["index"])
    if name in ("RTM_NEWROUTE", "RTM_DELROUTE"):
        table = msg.get_attr("RTA_TABLE") or msg["table"]
        return Event("route", action) if msg["type"] == _RTN_LOCAL or table == _LOCAL_TABLE else None
    if name in ("RTM_NEWRULE", "RTM_DELRULE"):
        return Event("rule", action)
    return None

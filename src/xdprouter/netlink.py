"""The one module that speaks netlink (through pyroute2)."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

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


def set_up(index: int) -> None:
    """Bring interface ``index`` up."""
    with IPRoute() as ipr:
        ipr.link("set", index=index, state="up")


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


_RTN_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
}


def route_get(
    dst: str,
    src: str | None = None,
    iif: int | None = None,
    tos: int = 0,
    proto: int | None = None,
    sport: int | None = None,
    dport: int | None = None,
) -> dict[str, Any]:
    """``ip route get DST [from SRC iif IFACE tos T ipproto P sport S dport D]``:
    the route Linux picks for a packet arriving on ``iif``; ``{"error": ...}``
    when it refuses (no route, forwarding off, martian source...)."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    req: dict[str, Any] = {"dst": dst, "family": family, "tos": tos}
    if src is not None:
        req["src"] = src
    if iif is not None:
        req["iif"] = iif
    if proto is not None:
        req["ip_proto"] = proto
    if sport is not None:
        req["sport"] = sport
    if dport is not None:
        req["dport"] = dport
    try:
        with IPRoute() as ipr:
            (msg,) = ipr.route("get", **req)
    except NetlinkError as e:
        return {"error": f"ip route get: {os.strerror(e.code)}"}
    out: dict[str, Any] = {"type": _RTN_TYPES.get(msg["type"], str(msg["type"])), "dst": dst}
    for key, attr in (
        ("oif", "RTA_OIF"),
        ("gateway", "RTA_GATEWAY"),
        ("prefsrc", "RTA_PREFSRC"),
        ("table", "RTA_TABLE"),
    ):
        value = msg.get_attr(attr)
        if value is not None:
            out[key] = value
    via = msg.get_attr("RTA_VIA")
    if via is not None and "gateway" not in out:
        out["gateway"] = via.get("addr")
    return out


def neighbour_mac(ifindex: int, addr: str) -> str | None:
    """The link-layer address of neighbour ``addr`` on ``ifindex``, if known."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with IPRoute() as ipr:
        for msg in ipr.get_neighbours(family=family, ifindex=ifindex):
            if msg.get_attr("NDA_DST") == addr and msg.get_attr("NDA_LLADDR"):
                return msg.get_attr("NDA_LLADDR")
    return None


def neighbour_by_mac(ifindex: int, mac: str, ipv6: bool = False) -> str | None:
    """A neighbour address of the family on ``ifindex`` whose link-layer
    address is ``mac`` (the first one when several share it; link-local
    addresses last resort)."""
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    with IPRoute() as ipr:
        found = [
            msg.get_attr("NDA_DST")
            for msg in ipr.get_neighbours(family=family, ifindex=ifindex)
            if msg.get_attr("NDA_LLADDR") == mac
        ]
    found.sort(key=lambda a: str(a).startswith("fe80"))
    return found[0] if found else None

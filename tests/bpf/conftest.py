"""A lab with xdprouter attached, for running the real program on frames with
BPF_PROG_RUN inside the router's namespace (bpf_fib_lookup() uses the
caller's namespace, so its FIB and neighbours are the lab router's).

The router gets, besides the lab's two subnets:

===================================  ===================================================
198.51.100.0/24, 2001:db8:100::/48   blackhole
198.51.101.0/24, 2001:db8:101::/48   unreachable
198.51.102.0/24, 2001:db8:102::/48   prohibit
192.0.2.0/24, 2001:db8:300::/48      via h2 (a remote network)
198.18.0.0/24, 2001:db8:400::/48     via h2, route MTU 1300
198.18.1.0/24, 2001:db8:401::/48     via h2, route MTU locked at 1300
198.51.103.0/24, 2001:db8:103::/48   lightweight tunnel encapsulation (encap ip/ip6)
198.19.0.0/16, 2001:db8:600::/48     multipath: via h2 and via 10.2.0.3 / fd02::3
100.64.0.9/32, 2001:db8:500::9/128   on-link on veth2, no neighbour
203.0.113.0/24, 2001:db8:200::/48    via 10.1.0.3 / fd01::3 on veth1 (same iface)
10.3.0.0/24, fd03::/64               veth3, which xdprouter is not attached to
===================================  ===================================================
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from packets import H2_IP4, H2_IP6, Macs

from xdprouter.lab import Lab, netns
from xdprouter.router import IfaceCounters, LookupCounters, Router, TestRunResult

# MACs of neighbours that exist only in the router's neighbour table
SAME_IFACE_GW_MAC = "02:00:00:00:01:03"
VETH3_NEIGH_MAC = "02:00:00:00:03:02"
ECMP_GW_MAC = "02:00:00:00:02:03"  # the second next hop of the multipath routes

_ROUTES = [
    ("route", "add", "blackhole", "198.51.100.0/24"),
    ("-6", "route", "add", "blackhole", "2001:db8:100::/48"),
    ("route", "add", "unreachable", "198.51.101.0/24"),
    ("-6", "route", "add", "unreachable", "2001:db8:101::/48"),
    ("route", "add", "prohibit", "198.51.102.0/24"),
    ("-6", "route", "add", "prohibit", "2001:db8:102::/48"),
    ("route", "add", "192.0.2.0/24", "via", H2_IP4),
    ("-6", "route", "add", "2001:db8:300::/48", "via", H2_IP6),
    ("route", "add", "198.18.0.0/24", "via", H2_IP4, "mtu", "1300"),
    ("-6", "route", "add", "2001:db8:400::/48", "via", H2_IP6, "mtu", "1300"),
    ("route", "add", "198.18.1.0/24", "via", H2_IP4, "mtu", "lock", "1300"),
    ("-6", "route", "add", "2001:db8:401::/48", "via", H2_IP6, "mtu", "lock", "1300"),
    ("route", "add", "198.51.103.0/24", "encap", "ip", "id", "1", "dst", "10.2.0.9", "dev", "veth2"),
    ("-6", "route", "add", "2001:db8:103::/48", "encap", "ip6", "id", "1", "dst", "fd02::9", "dev", "veth2"),
    ("route", "add", "198.19.0.0/16", "nexthop", "via", H2_IP4, "nexthop", "via", "10.2.0.3"),
    ("-6", "route", "add", "2001:db8:600::/48", "nexthop", "via", H2_IP6, "nexthop", "via", "fd02::3"),
    ("route", "add", "100.64.0.9/32", "dev", "veth2"),
    ("-6", "route", "add", "2001:db8:500::9/128", "dev", "veth2"),
    ("route", "add", "203.0.113.0/24", "via", "10.1.0.3", "dev", "veth1"),
    ("-6", "route", "add", "2001:db8:200::/48", "via", "fd01::3", "dev", "veth1"),
]


@dataclass
class DataPlane:
    """The lab router, xdprouter attached to veth1 and veth2."""

    lab: Lab
    macs: Macs

    def run(self, frame: bytes, iface: str = "veth1", repeat: int = 1) -> TestRunResult:
        """BPF_PROG_RUN of the attached program, as if ``frame`` arrived on ``iface``."""
        with netns(self.lab.router):
            return Router().test_run(frame, iface, repeat=repeat)

    def stats(self) -> dict[str, IfaceCounters]:
        with netns(self.lab.router):
            return Router().stats()

    def ip(self, *args: str) -> None:
        self.lab.ip(self.lab.router, *args)

    def sysctl(self, key: str, value: str | None = None) -> str:
        """Read (and with ``value``, write) a sysctl of the router; returns the old value."""
        old = self.lab.run(self.lab.router, "sysctl", "-n", key).stdout.strip()
        if value is not None:
            self.lab.sysctl(self.lab.router, key, value)
        return old

    def lookups(self) -> LookupCounters:
        """Route hint uses and IPv6 main-table-only lookups so far, over all CPUs."""
        with netns(self.lab.router):
            return Router().lookup_counters()

    def attach(self) -> None:
        """(Re)attach: refreshes the program's sysctl and address snapshot."""
        self.lab.xdprouter("attach", "--mode", "native", *self.lab.router_ifaces)


def _setup(lab: Lab) -> Macs:
    r = lab.router
    macs = Macs(
        h1=lab.mac(lab.h1.ns, lab.h1.iface),
        r1=lab.mac(r, "veth1"),
        r2=lab.mac(r, "veth2"),
        h2=lab.mac(lab.h2.ns, lab.h2.iface),
    )
    # Neighbours, permanent so nothing ages or needs resolving.
    for addr, mac, dev in (
        (lab.h1.ip4, macs.h1, "veth1"),
        (lab.h1.ip6, macs.h1, "veth1"),
        (lab.h2.ip4, macs.h2, "veth2"),
        (lab.h2.ip6, macs.h2, "veth2"),
        ("10.1.0.3", SAME_IFACE_GW_MAC, "veth1"),
        ("fd01::3", SAME_IFACE_GW_MAC, "veth1"),
        ("10.2.0.3", ECMP_GW_MAC, "veth2"),
        ("fd02::3", ECMP_GW_MAC, "veth2"),
    ):
        lab.ip(r, "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud", "permanent")
    # A third interface in the router that xdprouter is not attached to.
    lab.ip(r, "link", "add", "veth3", "type", "veth", "peer", "name", "veth3p")
    for iface in ("veth3", "veth3p"):
        lab.sysctl(r, f"net.ipv6.conf.{iface}.accept_dad", "0")
        lab.ip(r, "link", "set", iface, "up")
    lab.ip(r, "addr", "add", "10.3.0.1/24", "dev", "veth3")
    lab.ip(r, "addr", "add", "fd03::1/64", "dev", "veth3", "nodad")
    for addr in ("10.3.0.2", "fd03::2"):
        lab.ip(r, "neigh", "replace", addr, "lladdr", VETH3_NEIGH_MAC, "dev", "veth3", "nud", "permanent")
    for route in _ROUTES:
        lab.ip(r, *route)
    return macs


@pytest.fixture(scope="module")
def dp() -> Iterator[DataPlane]:
    """One lab per test module; torn down (detach, namespaces deleted) even on failure."""
    lab = Lab(f"ub{os.getpid() % 100000}")
    with lab:
        try:
            macs = _setup(lab)
            plane = DataPlane(lab, macs)
            plane.attach()
            yield plane
        finally:
            lab.xdprouter("detach", "--all", check=False)

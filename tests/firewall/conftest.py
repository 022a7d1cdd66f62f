"""A lab with xdprouter attached and the firewall at hand: BPF_PROG_RUN of
the real program in the router's namespace, and the firewall's Python API."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from xdprouter.firewall import Firewall
from xdprouter.lab import Lab, netns
from xdprouter.router import Router, TestRunResult

H2_MAC = "02:00:00:00:00:22"


@dataclass
class FwLab:
    lab: Lab
    router_mac: str

    def frame(
        self, l3: Packet | None = None, l4: Packet | None = None, *, v6: bool = False, mac: str | None = None
    ) -> bytes:
        if l3 is None:
            l3 = IPv6(src=self.lab.h1.ip6, dst=self.lab.h2.ip6) if v6 else IP(src=self.lab.h1.ip4, dst=self.lab.h2.ip4)
        if l4 is None:
            l4 = UDP(sport=40000, dport=53)
        return bytes(Ether(dst=mac or self.router_mac, src="02:00:00:00:00:11") / l3 / l4 / (b"x" * 32))

    def run(self, frame: bytes, iface: str = "veth1") -> TestRunResult:
        with netns(self.lab.router):
            return Router().test_run(frame, iface)

    def fw(self, fn: Callable[[Firewall], object]) -> object:
        with netns(self.lab.router):
            return fn(Firewall())


@pytest.fixture(scope="package")
def fwlab() -> Iterator[FwLab]:
    lab = Lab(f"fw{os.getpid() % 100000}")
    with lab:
        try:
            for addr in (lab.h2.ip4, lab.h2.ip6):
                lab.ip(lab.router, "neigh", "replace", addr, "lladdr", H2_MAC, "dev", "veth2", "nud", "permanent")
            lab.ip(lab.router, "route", "add", "192.0.2.0/24", "via", lab.h2.ip4)
            lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
            yield FwLab(lab, lab.mac(lab.router, "veth1"))
        finally:
            lab.xdprouter("detach", "--all", check=False)


@pytest.fixture
def fl(fwlab: FwLab) -> Iterator[FwLab]:
    """The lab with an empty firewall before and after the test."""
    fwlab.fw(lambda f: f.flush())
    try:
        yield fwlab
    finally:
        fwlab.fw(lambda f: f.flush())


__all__ = ["FwLab", "TCP", "UDP"]

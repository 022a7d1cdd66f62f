"""A lab with xdprouter attached (native) for steering: BPF_PROG_RUN of the
real program in the router's namespace, the Steering API, rules flushed
before and after each test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from xdprouter.firewall import Firewall
from xdprouter.lab import Lab, netns
from xdprouter.router import Router, TestRunResult
from xdprouter.steer import Steering

H2_MAC = "02:00:00:00:00:22"


@dataclass
class SteerLab:
    lab: Lab
    router_mac: str  # veth1's
    router_mac2: str  # veth2's

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

    def steer(self, fn: Callable[[Steering], Any]) -> Any:
        with netns(self.lab.router):
            return fn(Steering())

    def fw(self, fn: Callable[[Firewall], Any]) -> Any:
        with netns(self.lab.router):
            return fn(Firewall())


@pytest.fixture(scope="package")
def steerlab() -> Iterator[SteerLab]:
    lab = Lab(f"st{os.getpid() % 100000}")
    with lab:
        try:
            for addr in (lab.h2.ip4, lab.h2.ip6):
                lab.ip(lab.router, "neigh", "replace", addr, "lladdr", H2_MAC, "dev", "veth2", "nud", "permanent")
            lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
            yield SteerLab(lab, lab.mac(lab.router, "veth1"), lab.mac(lab.router, "veth2"))
        finally:
            lab.xdprouter("detach", "--all", check=False)


@pytest.fixture
def sl(steerlab: SteerLab) -> Iterator[SteerLab]:
    """The lab with no steering rule and no firewall rule before and after the test."""
    steerlab.steer(lambda s: s.flush())
    try:
        yield steerlab
    finally:
        steerlab.steer(lambda s: s.flush())
        steerlab.fw(lambda f: f.flush())

"""A lab with xdprouter attached (native) for steering: BPF_PROG_RUN of the
real program in the router's namespace, the Steering API, rules flushed
before and after each test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from firewall.conftest import FwLab  # tests/ is on the path, as for packets.py

from xdprouter.lab import Lab, netns
from xdprouter.steer import Steering

H2_MAC = "02:00:00:00:00:22"


@dataclass
class SteerLab(FwLab):
    """The firewall tests' lab helpers, veth2's MAC, and the steering API."""

    router_mac2: str  # veth2's

    def steer(self, fn: Callable[[Steering], Any]) -> Any:
        with netns(self.lab.router):
            return fn(Steering())


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

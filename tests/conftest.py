"""Shared fixtures: each test that needs a network gets its own lab of
namespaces, removed afterwards even when the test fails."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdprouter.lab import Lab, netns
from xdprouter.router import default_object_path
from xdprouter.traffic import Traffic

_counter = 0


def _prefix() -> str:
    global _counter
    _counter += 1
    return f"t{os.getpid() % 10000}x{_counter}"


@pytest.fixture(scope="session", autouse=True)
def _requirements() -> None:
    if os.geteuid() != 0:
        pytest.skip("xdprouter's tests need root (namespaces, XDP)")
    if not Path(default_object_path()).exists():
        pytest.fail(f"{default_object_path()} missing: run `make bpf`")


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh h1 — r — h2 lab, nothing attached."""
    with Lab(_prefix()) as lab:
        yield lab


@pytest.fixture
def attached_lab(lab: Lab) -> Iterator[Lab]:
    """The lab with xdprouter attached to both router interfaces (native)."""
    lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
    try:
        yield lab
    finally:
        lab.xdprouter("detach", "--all", check=False)


@pytest.fixture
def live_traffic(attached_lab: Lab) -> Iterator[tuple[Lab, Traffic, int]]:
    """The attached lab with neighbours resolved, the live-frames generator
    ready on h1 (its eth0 ifindex) and the counting sink on h2's eth0."""
    lab = attached_lab
    for flag, addr in (("-4", lab.h2.ip4), ("-6", lab.h2.ip6)):
        lab.run(lab.h1.ns, "ping", flag, "-c", "1", "-W", "2", addr)
    with Traffic() as traffic:
        with netns(lab.h2.ns):
            h2 = socket.if_nametoindex("eth0")
            traffic.attach_sink(h2)
        with netns(lab.h1.ns):
            h1 = socket.if_nametoindex("eth0")
        try:
            yield lab, traffic, h1
        finally:
            with netns(lab.h2.ns):
                traffic.detach_sink(h2)

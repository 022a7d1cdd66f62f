"""Shared fixtures: each test that needs a network gets its own lab of
namespaces, removed afterwards even when the test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdprouter.lab import Lab
from xdprouter.lab.traffic import Traffic
from xdprouter.router import default_object_path

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
def loaded_lab(attached_lab: Lab) -> Iterator[tuple[Lab, Traffic]]:
    """The attached lab with neighbours resolved and the load sources'
    programs loaded (``traffic.Loop``, ``traffic.Injector``)."""
    lab = attached_lab
    for flag, addr in (("-4", lab.h2.ip4), ("-6", lab.h2.ip6)):
        lab.run(lab.h1.ns, "ping", flag, "-c", "1", "-W", "2", addr)
    with Traffic() as traffic:
        yield lab, traffic


@pytest.fixture
def sink_h2(loaded_lab: tuple[Lab, Traffic]) -> Iterator[None]:
    """The counting sink on h2's interface."""
    lab, traffic = loaded_lab
    traffic.attach(lab.h2.ns, lab.h2.iface, traffic.sink)
    try:
        yield
    finally:
        traffic.detach(lab.h2.ns, lab.h2.iface)

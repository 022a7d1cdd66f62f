"""Shared fixtures: each test that needs a network gets its own lab of
namespaces, removed afterwards even when the test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdprouter.lab import Lab
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

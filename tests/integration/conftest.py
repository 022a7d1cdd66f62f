"""Fixtures of the integration tests: the shared lab, with the router's ICMP
error rate limit off so every probe that should get an answer gets one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xdprouter.lab import Lab


def no_icmp_ratelimit(lab: Lab) -> None:
    """The kernel rate-limits ICMP errors per peer (one a second after a short
    burst) with or without XDP; tests that count errors turn that off."""
    lab.sysctl(lab.router, "net.ipv4.icmp_ratelimit", "0")
    lab.sysctl(lab.router, "net.ipv6.icmp.ratelimit", "0")


@pytest.fixture
def router(attached_lab: Lab) -> Iterator[Lab]:
    """The attached lab, with the neighbours of both hosts already resolved
    (so the counters of a test see only what that test sends)."""
    no_icmp_ratelimit(attached_lab)
    for dst in ("10.1.0.2", "fd01::2", "10.2.0.2", "fd02::2"):
        six = ["-6"] if ":" in dst else []
        attached_lab.run(attached_lab.router, "ping", *six, "-n", "-c", "1", "-W", "2", dst, timeout=10)
    yield attached_lab

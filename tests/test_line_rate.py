"""Millions of frames at full speed: every one arrives, and the fast path
counts every one as forwarded.

The load is the closed loop (`traffic.Loop`): 128 frames injected by h1,
sent back into the router by XDP programs on both hosts until 2,000,000 have
been forwarded. With fewer frames in flight than a veth ring holds, no ring
can overflow, so nothing may go missing: every frame injected must retire,
every frame forwarded must arrive, and the router must count each one as
forwarded in XDP. No timing is asserted: speed is the benchmark's business
(`make bench`), completeness is this test's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from xdprouter.lab import Lab
from xdprouter.lab.traffic import Loop, LoopResult, Traffic, Vary

FRAMES = 2_000_000


def _forwarded(lab: Lab) -> int:
    stats = json.loads(lab.xdprouter("stats", "--json").stdout)
    return sum(stats[iface]["forwarded"] for iface in lab.router_ifaces)


def _loop_frames(lab: Lab, size: int, ipv6: bool = False) -> list[bytes]:
    """h1's frame to h2 and h2's to h1, UDP to the loop's port, ``size`` bytes."""
    frames = []
    for src, dst, rif in ((lab.h1, lab.h2, "veth1"), (lab.h2, lab.h1, "veth2")):
        l3 = IPv6(src=src.ip6, dst=dst.ip6) if ipv6 else IP(src=src.ip4, dst=dst.ip4)
        eth = Ether(dst=lab.mac(lab.router, rif), src=lab.mac(src.ns, src.iface))
        frame = eth / l3 / UDP(sport=10000, dport=9)
        frames.append(bytes(frame / (b"\x00" * (size - len(frame)))))
    return frames


def _all_forwarded(lab: Lab, traffic: Traffic, frames: list[bytes], total: int) -> LoopResult:
    """``total`` frames through the loop: none lost, every one arrived and
    counted as forwarded in XDP."""
    before = _forwarded(lab)
    with Loop(traffic, lab) as loop:
        run = loop.run(*frames, total, vary_a=Vary(flows=256), vary_b=Vary(flows=256))
    forwarded = _forwarded(lab) - before
    assert run.retired == run.in_flight, f"{run.lost} of {run.in_flight} frames in flight lost"
    assert run.forwarded == total, f"{total - run.forwarded} frames never arrived"
    assert forwarded == total, f"{total - forwarded} frames that arrived were not forwarded in XDP"
    return run


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_millions_of_frames_all_arrive_forwarded_in_xdp(loaded_lab: tuple[Lab, Traffic], ipv6: bool) -> None:
    lab, traffic = loaded_lab
    drops_before = lab.ring_drops()
    run = _all_forwarded(lab, traffic, _loop_frames(lab, 80 if ipv6 else 60, ipv6), FRAMES)
    assert lab.ring_drops() == drops_before
    assert run.pps > 0


JUMBO_MTU = 9000
JUMBO_FRAMES = 200_000


@pytest.fixture
def jumbo_lab(lab: Lab) -> Iterator[tuple[Lab, Traffic]]:
    """The lab at MTU 9,000 everywhere, xdprouter attached natively (multi-buffer frames)."""
    for ns, iface in ((lab.router, "veth1"), (lab.router, "veth2"), (lab.h1.ns, "eth0"), (lab.h2.ns, "eth0")):
        lab.ip(ns, "link", "set", "dev", iface, "mtu", str(JUMBO_MTU))
    lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
    try:
        for flag, addr in (("-4", lab.h2.ip4), ("-6", lab.h2.ip6)):
            lab.run(lab.h1.ns, "ping", flag, "-c", "1", "-W", "2", addr)
        with Traffic() as traffic:
            yield lab, traffic
    finally:
        lab.xdprouter("detach", "--all", check=False)


def test_jumbo_frames_at_full_speed_all_arrive_forwarded_in_xdp(jumbo_lab: tuple[Lab, Traffic]) -> None:
    """The same at 9,014-byte frames (the MTU's worth of IPv4): more than a
    page each, so every hop handles multi-buffer frames."""
    lab, traffic = jumbo_lab
    frames = _loop_frames(lab, 14 + JUMBO_MTU)
    assert len(frames[0]) == 14 + JUMBO_MTU
    _all_forwarded(lab, traffic, frames, JUMBO_FRAMES)
    stats = json.loads(lab.xdprouter("stats", "--json").stdout)
    assert stats["veth1"]["bytes"]["forwarded"] == stats["veth1"]["forwarded"] * (14 + JUMBO_MTU)  # whole frames

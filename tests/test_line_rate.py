"""Millions of frames at full speed: every one arrives, and the fast path
counts every one as forwarded.

The load is BPF_PROG_RUN live frames from h1 (as fast as one core makes
them); an XDP sink on h2 counts arrivals. No timing is asserted: speed is the
benchmark's business (`make bench`), completeness is this test's.
"""

from __future__ import annotations

import json

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from xdprouter.lab import Lab, netns
from xdprouter.traffic import Traffic

FRAMES = 2_000_000


def _forwarded(lab: Lab) -> int:
    return json.loads(lab.xdprouter("stats", "--json").stdout)["veth1"]["forwarded"]


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_millions_of_frames_all_arrive_forwarded_in_xdp(live_traffic: tuple[Lab, Traffic, int], ipv6: bool) -> None:
    lab, traffic, h1 = live_traffic
    l3 = IPv6(src=lab.h1.ip6, dst=lab.h2.ip6) if ipv6 else IP(src=lab.h1.ip4, dst=lab.h2.ip4)
    eth = Ether(dst=lab.mac(lab.router, "veth1"), src=lab.mac(lab.h1.ns, "eth0"))
    frame = bytes(eth / l3 / UDP(sport=10000, dport=9) / (b"\x00" * 18))
    before = _forwarded(lab)
    traffic.reset()
    with netns(lab.h1.ns):
        traffic.send(h1, frame, FRAMES, flows=256)
    got = traffic.received()
    assert got.packets >= FRAMES, f"{FRAMES - got.packets} of {FRAMES} frames lost"
    assert _forwarded(lab) - before == FRAMES

"""Millions of frames at full speed: every one arrives, and the fast path
counts every one as forwarded.

The load is BPF_PROG_RUN live frames from h1 (as fast as one core makes
them); an XDP sink on h2 counts arrivals. No timing is asserted: speed is the
benchmark's business (`make bench`), completeness is this test's.

The one loss allowed is the one the kernel counts at a veth's ring (the
generator can outrun the NAPI that drains it when the scheduler defers
softirqs): a frame that h1 could not hand to the router, or that the router's
redirect could not hand to h2, is in `ethtool -S` as an xdp_xmit error, the
equivalent of a full NIC ring. Every other frame must be forwarded and
arrive, and such drops must stay rare.
"""

from __future__ import annotations

import json
import time

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
    before, drops_before = _forwarded(lab), lab.ring_drops()
    traffic.reset()
    with netns(lab.h1.ns):
        traffic.send(h1, frame, FRAMES, flows=256)
    time.sleep(0.05)  # what is still in a ring
    got = traffic.received().packets
    forwarded = _forwarded(lab) - before
    to_router, to_h2 = (a - b for a, b in zip(lab.ring_drops(), drops_before, strict=True))
    assert to_router + to_h2 < FRAMES // 20, f"veth rings dropped {to_router} + {to_h2} frames"
    assert forwarded == FRAMES - to_router, f"{FRAMES - to_router - forwarded} frames the router got not forwarded"
    assert got >= forwarded - to_h2, f"{forwarded - to_h2 - got} forwarded frames lost after the router"

"""Real frames through the lab (the injector or the flood generator on h1,
the counting sink on h2): a blocked source is dropped in XDP while another is
forwarded, and a rate limit holds within 10% under a flood while legitimate
traffic to the router keeps flowing."""

from __future__ import annotations

import re
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from xdprouter.firewall import Firewall, Rule
from xdprouter.lab import Lab, netns
from xdprouter.lab.feeds import Flood, Injector
from xdprouter.lab.traffic import Traffic, Vary
from xdprouter.router import Router

FRAMES = 400_000


def _frame(lab: Lab, src: str) -> bytes:
    eth = Ether(dst=lab.mac(lab.router, "veth1"), src=lab.mac(lab.h1.ns, "eth0"))
    return bytes(eth / IP(src=src, dst=lab.h2.ip4) / UDP(sport=10000, dport=9) / (b"\x00" * 18))


def _settle(traffic: Traffic, want: int) -> None:
    """Until the sink has counted ``want`` frames or stops counting."""
    last, deadline = -1, time.monotonic() + 5
    while (got := traffic.received().packets) < want and got != last and time.monotonic() < deadline:
        last = got
        time.sleep(0.05)


def test_blocked_source_dropped_in_xdp_while_others_are_forwarded(
    loaded_lab: tuple[Lab, Traffic], sink_h2: None
) -> None:
    lab, traffic = loaded_lab
    with netns(lab.router):
        Firewall().add(Rule.parse(action="drop", src="10.1.0.66/32"))
    with Injector(traffic, lab, lab.h1) as injector:
        traffic.reset()
        drops0 = lab.ring_drops()
        injector.send(_frame(lab, "10.1.0.66"), FRAMES)
        blocked = injector.sent()
        drops1 = lab.ring_drops()
        injector.send(_frame(lab, lab.h1.ip4), FRAMES)
        forward = injector.sent() - blocked
        _settle(traffic, forward)
        drops2 = lab.ring_drops()
    assert blocked == forward == FRAMES, "the injector did not send every frame"
    # frames a veth ring refused (lab.ring_drops()) are the only loss allowed
    blocked_lost, forward_lost = drops1[0] - drops0[0], drops2[0] - drops1[0]
    after_router = drops2[1] - drops1[1]
    assert blocked_lost + forward_lost + after_router < FRAMES // 20
    assert traffic.received().packets >= FRAMES - forward_lost - after_router
    with netns(lab.router):
        (rule,) = Firewall().counters()
        stats = Router().stats()["veth1"]
    assert rule.packets == FRAMES - blocked_lost
    assert stats.reasons["fw_drop"].packets == FRAMES - blocked_lost
    assert stats.reasons["forward"].packets >= FRAMES - forward_lost


def test_rate_limit_holds_under_a_flood_and_legit_traffic_flows(loaded_lab: tuple[Lab, Traffic], sink_h2: None) -> None:
    lab, traffic = loaded_lab
    pps, frames = 50_000, 2_000_000
    with netns(lab.router):
        Firewall().add(Rule.parse(action="limit", proto="udp", dport="9", pps=pps, burst=100))
    ping = lab.popen(lab.h1.ns, "ping", "-i", "0.01", "-c", "200", "-W", "1", lab.h1.gw4)  # to the router itself
    # the flood generator keeps the router busy without gaps (a limiter
    # that sees traffic in bursts would pass less than its rate: tokens
    # beyond the burst are not kept)
    with Flood(traffic, lab, lab.h1) as flood:
        traffic.reset()
        start = time.monotonic()
        run = flood.run(_frame(lab, lab.h1.ip4), frames, Vary(flows=64))
        seconds = time.monotonic() - start
        time.sleep(0.05)  # what is still in a ring
    assert run.sent == frames and run.lost == 0
    out, _ = ping.communicate(timeout=30)
    rate = (traffic.received().packets - 100) / seconds
    flood = frames / seconds
    assert flood > 2 * pps, f"the flood ({flood:.0f} pps) did not exceed the limit"
    assert abs(rate - pps) <= 0.1 * pps, f"{rate:.0f} pps let through, limit {pps}"
    loss = re.search(r"(\d+(?:\.\d+)?)% packet loss", out)
    assert loss, out
    print(f"flood {flood:.0f} pps, passed {rate:.0f} pps (limit {pps}), ping loss {loss.group(1)}%")
    assert float(loss.group(1)) <= 5.0

"""Each one-way load source alone: its rate into a bare XDP_DROP program on
the router's veth1 (docs/performance.md, "Load sources").

`python -m xdprouter.lab.sources [FRAMES]` builds its own lab, measures the
flood generator, the GSO injector and two AF_PACKET senders (one ``send()``
a frame from Python, and ``sendmmsg`` of 64 with ``PACKET_QDISC_BYPASS``),
prints Mpps (median of 3) and removes the lab. The closed loop's own rate
is the ``wire`` configuration of ``xdprouter bench``.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from collections.abc import Callable

from ..dataplane.syscalls import Copies
from . import Lab, netns
from .feeds import Flood, Injector
from .traffic import Traffic, Vary, on_cpu

SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
BATCH = 64


def _median_mpps(frames: int, send: Callable[[], object]) -> float:
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        send()
        rates.append(frames / (time.perf_counter() - start) / 1e6)
    return statistics.median(rates)


def _packet_socket(lab: Lab, bypass: bool) -> socket.socket:
    with netns(lab.h1.ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    if bypass:
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    sock.bind((lab.h1.iface, 0))
    return sock


def measure(frames: int = 300_000) -> dict[str, float]:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    out: dict[str, float] = {}
    with Lab("xdprsrc") as lab, Traffic() as traffic:
        eth = Ether(dst=lab.mac(lab.router, lab.router_ifaces[0]), src=lab.mac(lab.h1.ns, lab.h1.iface))
        frame = bytes(eth / IP(src=lab.h1.ip4, dst=lab.h2.ip4) / UDP(sport=10000, dport=9) / (b"\0" * 18))
        traffic.attach(lab.router, lab.router_ifaces[0], traffic.drop)
        plain, bypass = _packet_socket(lab, False), _packet_socket(lab, True)
        copies = Copies(frame, BATCH)

        def send_each() -> None:
            for _ in range(frames):
                plain.send(frame)

        def send_mmsg() -> None:
            left = frames
            while left:
                left -= copies.send(bypass.fileno(), left)

        try:
            with on_cpu(0):
                out["AF_PACKET send() per frame"] = _median_mpps(frames, send_each)
                out["AF_PACKET sendmmsg x64, PACKET_QDISC_BYPASS"] = _median_mpps(frames, send_mmsg)
            with Injector(traffic, lab, lab.h1) as injector:
                out["UDP GSO injector"] = _median_mpps(frames, lambda: injector.send(frame, frames, Vary(srcs=65536)))
            with Flood(traffic, lab, lab.h1) as flood:
                runs = [flood.run(frame, frames, Vary(srcs=65536)).pps / 1e6 for _ in range(3)]
                out["flood generator"] = statistics.median(runs)
        finally:
            plain.close()
            bypass.close()
            traffic.detach(lab.router, lab.router_ifaces[0])
    return out


if __name__ == "__main__":
    for name, mpps in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000).items():
        print(f"{name:<48} {mpps:6.2f} Mpps")

"""Frames received in Python per second: ``xdprouter.xsk`` against an
``AF_PACKET`` raw socket, reading the same one-way flood in a lab.

    python -m xdprouter.lab.xskbench [--seconds 3] [--reps 3] [--json]

h1 floods the router's veth1 with 64-byte UDP frames (``traffic.Injector``:
UDP GSO sends turned into frames by an XDP program, on CPU 0); a Python loop
on CPU 1 reads them, in turn through a ``xsk.Port`` on veth1 (batches of 64,
each frame's length read from its UMEM view) and through an AF_PACKET socket
bound to veth1 (``recv_into`` a reusable buffer, one frame per call). Both
count what they received in a fixed time. The batch API's own cost per frame
is timed apart: ``recv`` of full batches already in the RX ring, the flood
stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.synchronize
import os
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from .. import xsk
from . import Lab, netns
from .feeds import Injector
from .traffic import Traffic, Vary, on_cpu

ETH_P_ALL = 0x0003


@dataclass
class Result:
    xsk_pps: float
    af_packet_pps: float
    ratio: float
    offered_pps: float
    batch_ns_per_frame: float
    af_packet_ns_per_frame: float
    xsk_runs: list[float]
    af_packet_runs: list[float]


def _flood(injector: Injector, frame: bytes, stop: multiprocessing.synchronize.Event, sent: Any) -> None:
    while not stop.is_set():
        injector.send(frame, 64 * 256, Vary(flows=64), cpu=0)
        with sent.get_lock():
            sent.value += 64 * 256


def _timed(receive: Any, injector: Injector, frame: bytes, seconds: float) -> tuple[float, float]:
    """(frames received per second, frames offered per second). The flood
    runs in a forked process, so neither side waits for the other's GIL."""
    ctx = multiprocessing.get_context("fork")
    stop, sent = ctx.Event(), ctx.Value("q", 0)
    flood = ctx.Process(target=_flood, args=(injector, frame, stop, sent), daemon=True)
    flood.start()
    try:
        time.sleep(0.3)  # the flood at full rate first
        before = sent.value
        count, elapsed = receive(seconds)
        offered = (sent.value - before) / elapsed
    finally:
        stop.set()
        flood.join(10)
        if flood.is_alive():
            flood.kill()
    return count / elapsed, offered


def _xsk_receive(port: xsk.Port) -> Any:
    def run(seconds: float) -> tuple[int, float]:
        count = 0
        with on_cpu(1):
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                for frame in port.recv(64):
                    count += len(frame) > 0
            return count, time.perf_counter() - start

    return run


def _packet_receive(sock: socket.socket) -> Any:
    def run(seconds: float) -> tuple[int, float]:
        buf = bytearray(2048)
        count = 0
        sock.settimeout(0.01)
        with on_cpu(1):
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                try:
                    count += sock.recv_into(buf) > 0
                except TimeoutError:
                    pass
            return count, time.perf_counter() - start

    return run


def batch_cost(port: xsk.Port, injector: Injector, frame: bytes) -> float:
    """ns per frame of ``recv`` on full batches waiting in the ring."""
    sock = port.sockets[0]
    total_ns = frames = 0
    for _ in range(20):
        while sock.recv(64):
            pass
        injector.send(frame, 1024, Vary(flows=64), cpu=0)
        time.sleep(0.05)
        with on_cpu(1):
            while sock.pending() >= 64:
                t = time.perf_counter_ns()
                n = len(sock.recv(64))
                total_ns += time.perf_counter_ns() - t
                frames += n
    return total_ns / frames if frames else float("nan")


def packet_cost(sock: socket.socket, injector: Injector, frame: bytes) -> float:
    """ns per frame of ``recv_into`` on an AF_PACKET socket with frames queued."""
    buf = bytearray(2048)
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
    sock.setblocking(False)
    total_ns = frames = 0
    for _ in range(20):
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.recv_into(buf)
        injector.send(frame, 1024, Vary(flows=64), cpu=0)
        time.sleep(0.05)
        with on_cpu(1):
            t = time.perf_counter_ns()
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv_into(buf)
                    frames += 1
            total_ns += time.perf_counter_ns() - t
    return total_ns / frames if frames else float("nan")


def run(seconds: float = 3.0, reps: int = 3) -> Result:
    xsk_runs: list[float] = []
    pkt_runs: list[float] = []
    offered: list[float] = []
    with Lab(f"xb{os.getpid() % 10000}") as lab, Traffic() as traffic, Injector(traffic, lab, lab.h1) as injector:
        r1 = lab.mac(lab.router, "veth1")
        frame = bytes(
            Ether(dst=r1, src=lab.mac(lab.h1.ns, "eth0"))
            / IP(src="10.1.0.2", dst="10.1.0.1")
            / UDP(sport=10000, dport=9)
            / (b"\0" * 18)
        )
        for _ in range(reps):
            with netns(lab.router), xsk.Port("veth1") as port:
                pps, off = _timed(_xsk_receive(port), injector, frame, seconds)
            xsk_runs.append(pps)
            offered.append(off)
            with netns(lab.router):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            with sock:
                sock.bind(("veth1", 0))
                pps, off = _timed(_packet_receive(sock), injector, frame, seconds)
            pkt_runs.append(pps)
            offered.append(off)
        with netns(lab.router), xsk.Port("veth1", [0]) as port:
            cost = batch_cost(port, injector, frame)
        with netns(lab.router):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        with sock:
            sock.bind(("veth1", 0))
            pcost = packet_cost(sock, injector, frame)
    x, p = statistics.median(xsk_runs), statistics.median(pkt_runs)
    return Result(x, p, x / p, statistics.median(offered), cost, pcost, xsk_runs, pkt_runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.seconds, args.reps)
    if args.json:
        print(json.dumps(asdict(r), indent=2))
    else:
        print(f"xsk (Python, batches of 64):  {r.xsk_pps / 1e6:6.3f} Mpps")
        print(f"AF_PACKET (Python recv_into): {r.af_packet_pps / 1e6:6.3f} Mpps")
        print(f"ratio: {r.ratio:.1f}x   flood offered: {r.offered_pps / 1e6:.3f} Mpps")
        print(f"batch API: {r.batch_ns_per_frame:.0f} ns a frame (recv of full batches)")
        print(f"AF_PACKET: {r.af_packet_ns_per_frame:.0f} ns a frame (recv_into, frames queued)")
        print(f"capacity ratio: {r.af_packet_ns_per_frame / r.batch_ns_per_frame:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

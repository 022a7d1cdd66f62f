"""Frames received in Python per second: ``xdprouter.xsk`` against an
``AF_PACKET`` raw socket, reading the same one-way flood in a lab
(``xdprouter bench --xsk``, or alone:)

    python -m xdprouter.lab.xskbench [--seconds 3] [--reps 3] [--json]

h1 floods the router's veth1 with 60-byte UDP frames (``feeds.Flood``, the
devmap broadcast generator; its work and the router's receive path run on
CPU 0), addressed to another MAC than the router's, so that the kernel
drops them right after the AF_PACKET tap (AF_PACKET's cheapest case). A
Python loop on CPU 1 reads them, in turn through a ``xsk.Port`` on veth1
(batches of 64, an RX ring of 16,384) and through an AF_PACKET socket bound
to veth1 (``recv_into`` a reused buffer, non-blocking, one frame a call, a
16 MB receive buffer); both read a byte of every frame (the IP protocol)
and count the UDP ones, for a fixed time. Also reported: the flood's rate
during each reader's runs, and where the frames the reader missed were
dropped.

The costs per frame are timed apart, with frames already queued (the flood
stopped): ``Socket.recv`` of full batches (the batch API alone), with each
frame's length or a byte of it read, ``recv_into`` likewise, and the ways
a received frame goes on (in place, copied to another interface's socket,
back to the kernel).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing
import multiprocessing.synchronize
import os
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from .. import xsk
from ..dataplane.abi import GenCount
from . import Lab, netns
from .feeds import Flood
from .traffic import Traffic, Vary, on_cpu

ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33
SOL_PACKET, PACKET_STATISTICS = 263, 6
OTHER_MAC = "02:00:00:00:00:99"  # the flood's destination: not the router's
BATCH = 64
PROTO = 23  # the IP protocol byte of an IPv4 frame: what each reader looks at
XSK_RING = 16384  # the flood runs' RX ring: 8 ms of the flood, as AF_PACKET's 16 MB hold about as many frames
CHUNK = 2_000_000  # frames per flood run in the flooding process (one gap of a few ms each)

Reader = Callable[[float], tuple[int, float]]


@dataclass
class Result:
    xsk_pps: float  # frames read by Python through xsk.Port under the flood (median of the runs)
    af_packet_pps: float  # through AF_PACKET
    ratio: float  # of the two medians
    offered_pps: dict[str, float]  # reader -> the flood's rate during its runs (median)
    socket_dropped: dict[str, float]  # reader -> share of the offered frames dropped at its socket(s)
    ring_dropped: dict[str, float]  # reader -> share refused by the router's veth ring
    batch_ns_per_frame: float  # Socket.recv alone, full batches queued: the batch API's own cost
    ns_per_frame: dict[str, float]  # COSTS -> ns per frame, frames queued
    capacity_ratio: float  # per-frame costs, AF_PACKET / xsk, a byte of every frame read
    capacity_ratio_length: float  # the same, each frame's length read
    xsk_runs: list[float] = field(default_factory=list)
    af_packet_runs: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


COSTS = {
    "recv": "xsk Socket.recv of full batches (the batch API alone)",
    "recv_length": "xsk recv and each frame's length read",
    "recv_byte": "xsk recv and a byte of each frame read",
    "af_packet_length": "AF_PACKET recv_into (its length)",
    "af_packet_byte": "AF_PACKET recv_into and a byte read",
    "send_in_place": "xsk send_in_place, whole batches",
    "send_in_place_python": "  of which Python's part (kick=False)",
    "send_copy_other": "xsk send to veth2's socket (a copy)",
    "send_copy_other_python": "  of which Python's part (kick=False)",
    "to_kernel": "xsk Port.to_kernel (TAP write, TC redirect)",
}


def _flood(flood: Flood, frame: bytes, stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        flood.run(frame, CHUNK, Vary(flows=64), cpu=0)


@dataclass
class Window:
    """One reader under the flood, over its timed window."""

    read: int  # frames the reader counted
    offered: int  # frames the flood sent toward the router
    socket_dropped: int  # frames the kernel dropped at the reader's socket(s): it did not keep up
    ring_dropped: int  # frames the router's veth ring refused (its NAPI did not keep up)
    seconds: float

    @property
    def pps(self) -> float:
        return self.read / self.seconds

    @property
    def offered_pps(self) -> float:
        return self.offered / self.seconds


def _timed(
    reader: Reader, lab: Lab, flood: Flood, traffic: Traffic, frame: bytes, seconds: float, dropped: Callable[[], int]
) -> Window:
    """One reader under the flood. The flood runs from a forked process
    (its waiting on CPU 1 is a poll every 5 ms)."""
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    proc = ctx.Process(target=_flood, args=(flood, frame, stop), daemon=True)
    proc.start()
    try:
        time.sleep(0.5)  # the flood at full rate first
        ring0, sock0 = lab.ring_drops()[0], dropped()
        sent0 = traffic.counted(GenCount.INJECT).packets
        count, elapsed = reader(seconds)
        sent = traffic.counted(GenCount.INJECT).packets - sent0
        sock, ring = dropped() - sock0, lab.ring_drops()[0] - ring0
    finally:
        stop.set()
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    return Window(count, sent, sock, ring, elapsed)


def xsk_reader(port: xsk.Port) -> Reader:
    def run(seconds: float) -> tuple[int, float]:
        count = 0
        recv = port.recv
        with on_cpu(1):
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                batch = recv(BATCH)
                umem = batch.umem
                for off in batch.offsets:
                    count += umem[off + PROTO] == 17
            return count, time.perf_counter() - start

    return run


def packet_reader(sock: socket.socket) -> Reader:
    def run(seconds: float) -> tuple[int, float]:
        buf = bytearray(2048)
        count = 0
        recv_into = sock.recv_into
        sock.setblocking(False)
        with on_cpu(1):
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                for _ in range(BATCH):  # the clock read once per 64 tries, as once per batch above
                    try:
                        recv_into(buf)
                    except BlockingIOError:
                        break
                    count += buf[PROTO] == 17
            return count, time.perf_counter() - start

    return run


def packet_drops(sock: socket.socket) -> Callable[[], int]:
    """The socket's dropped frames so far (PACKET_STATISTICS, which resets
    the kernel's counters at each read)."""
    total = [0]

    def read() -> int:
        total[0] += struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]
        return total[0]

    return read


def packet_socket(ns: str, iface: str) -> socket.socket:
    with netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    sock.bind((iface, 0))
    return sock


def _queue(flood: Flood, frame: bytes, n: int) -> None:
    flood.run(frame, n, Vary(flows=64), in_flight=16, cpu=0)


def _look(batch: xsk.Batch) -> int:
    """What the readers do with a batch: a byte of every frame."""
    n = 0
    umem = batch.umem
    for off in batch.offsets:
        n += umem[off + PROTO] == 17
    return n


def _nothing() -> None:
    pass


def _lengths(batch: xsk.Batch) -> int:
    n = 0
    for length in batch.lengths:
        n += length > 0
    return n


Work = tuple[Callable[[xsk.Batch], int], bool, Callable[[], object]]  # per batch, recv timed too, after a round


def _drain_costs(sock: xsk.Socket, flood: Flood, frame: bytes, rounds: int, works: dict[str, Work]) -> dict[str, float]:
    """ns per frame of each work on full batches of frames queued in the
    ring (1,536 a round, the flood stopped), the works taking turns round by
    round (so that a slow moment of the machine is shared)."""
    total = dict.fromkeys(works, 0)
    frames = dict.fromkeys(works, 0)
    for _ in range(rounds):
        for name, (work, with_recv, after) in works.items():
            while sock.recv(BATCH):
                pass
            _queue(flood, frame, 1536)
            with on_cpu(1):
                while sock.pending() >= BATCH:
                    t0 = time.perf_counter_ns()
                    batch = sock.recv(BATCH)
                    t1 = time.perf_counter_ns()
                    frames[name] += work(batch)
                    total[name] += time.perf_counter_ns() - (t0 if with_recv else t1)
                after()
    return {name: total[name] / frames[name] if frames[name] else float("nan") for name in works}


def xsk_costs(lab: Lab, flood: Flood, frame: bytes, rounds: int = 20) -> dict[str, float]:
    """ns per frame, frames queued: ``recv`` alone (the batch API's own
    cost), with each frame's length or a byte of it read (the readers), and
    the ways out (each without the recv): in place and copied to a socket on
    veth2, both with the kernel's transmit (copy mode: an skb, a copy and
    the veth's transmit per frame, in the kick's system calls) and without
    it (``kick=False``, sent after the round), and back to the kernel."""
    with netns(lab.router), xsk.Port(lab.router_ifaces[0]) as port, xsk.Socket(lab.router_ifaces[1], 0) as out:
        sock = port.sockets[0]  # the flood's frames arrive on queue 0 (sent from CPU 0)
        port.to_kernel([])  # the TAP made before timing
        return _drain_costs(
            sock,
            flood,
            frame,
            rounds,
            {
                "recv": (len, True, _nothing),
                "recv_length": (_lengths, True, _nothing),
                "recv_byte": (_look, True, _nothing),
                "send_in_place": (sock.send_in_place, False, _nothing),
                "send_in_place_python": (functools.partial(sock.send_in_place, kick=False), False, sock.flush),
                "send_copy_other": (out.send, False, _nothing),
                "send_copy_other_python": (functools.partial(out.send, kick=False), False, out.flush),
                "to_kernel": (port.to_kernel, False, _nothing),
            },
        )


def packet_costs(sock: socket.socket, flood: Flood, frame: bytes, rounds: int) -> dict[str, float]:
    """ns per frame of ``recv_into`` with the length or a byte read, frames
    queued on the socket, taking turns round by round."""
    buf = bytearray(2048)
    sock.setblocking(False)
    recv_into = sock.recv_into
    total = {"af_packet_length": 0, "af_packet_byte": 0}
    frames = dict.fromkeys(total, 0)
    for _ in range(rounds):
        for name in total:
            with contextlib.suppress(BlockingIOError):
                while True:
                    recv_into(buf)
            _queue(flood, frame, 1536)
            n = 0
            with on_cpu(1):
                t = time.perf_counter_ns()
                with contextlib.suppress(BlockingIOError):
                    if name == "af_packet_byte":
                        while True:
                            recv_into(buf)
                            n += buf[PROTO] == 17
                    else:
                        while True:
                            n += recv_into(buf) > 0
                total[name] += time.perf_counter_ns() - t
            frames[name] += n
    return {name: total[name] / frames[name] if frames[name] else float("nan") for name in total}


def _summary(windows: list[Window]) -> tuple[float, float, float, float]:
    """Median read and offered rates, and the shares dropped at the socket and at the ring."""
    offered = sum(w.offered for w in windows) or 1
    return (
        statistics.median(w.pps for w in windows),
        statistics.median(w.offered_pps for w in windows),
        sum(w.socket_dropped for w in windows) / offered,
        sum(w.ring_dropped for w in windows) / offered,
    )


def run(seconds: float = 3.0, reps: int = 3, rounds: int = 20) -> Result:
    """The whole measurement in a lab of its own: ``reps`` runs of ``seconds``
    per reader, and ``rounds`` of queued frames per cost."""
    runs: dict[str, list[Window]] = {"xsk": [], "af_packet": []}
    with Lab(f"xb{os.getpid() % 10000}") as lab, Traffic() as traffic, Flood(traffic, lab, lab.h1) as flood:
        frame = bytes(
            Ether(dst=OTHER_MAC, src=lab.mac(lab.h1.ns, lab.h1.iface))
            / IP(src=lab.h1.ip4, dst=lab.h1.gw4)
            / UDP(sport=10000, dport=9)
            / (b"\0" * 18)
        )
        iface = lab.router_ifaces[0]
        for _ in range(reps):
            with netns(lab.router), xsk.Port(iface, frames=2 * XSK_RING, ring_size=XSK_RING) as port:
                drops = lambda p=port: p.stats().rx_dropped  # noqa: E731
                runs["xsk"].append(_timed(xsk_reader(port), lab, flood, traffic, frame, seconds, drops))
            with packet_socket(lab.router, iface) as sock:
                runs["af_packet"].append(
                    _timed(packet_reader(sock), lab, flood, traffic, frame, seconds, packet_drops(sock))
                )
        costs = xsk_costs(lab, flood, frame, rounds)
        with packet_socket(lab.router, iface) as sock:
            costs.update(packet_costs(sock, flood, frame, rounds))
    summary = {name: _summary(w) for name, w in runs.items()}
    x, p = summary["xsk"][0], summary["af_packet"][0]
    return Result(
        x,
        p,
        x / p if p else 0.0,
        {n: s[1] for n, s in summary.items()},
        {n: s[2] for n, s in summary.items()},
        {n: s[3] for n, s in summary.items()},
        costs["recv"],
        {k: costs[k] for k in COSTS},
        costs["af_packet_byte"] / costs["recv_byte"],
        costs["af_packet_length"] / costs["recv_length"],
        [w.pps for w in runs["xsk"]],
        [w.pps for w in runs["af_packet"]],
    )


def table(r: Result) -> str:
    def line(name: str, label: str, pps: float) -> str:
        return (
            f"  {label:<26} {pps / 1e6:6.3f} Mpps of {r.offered_pps[name] / 1e6:.3f} offered"
            f"  (dropped: at the socket {r.socket_dropped[name]:.1%}, at the veth ring {r.ring_dropped[name]:.1%})"
        )

    return "\n".join(
        [
            "frames read in Python (a 60-byte UDP flood from h1, the reader on CPU 1, a byte of every frame read):",
            line("xsk", f"xsk.Port, batches of {BATCH}", r.xsk_pps),
            line("af_packet", "AF_PACKET, recv_into", r.af_packet_pps),
            f"  ratio {r.ratio:.1f}x",
            f"ns per frame, frames queued (batches of {BATCH}; sends include the kernel's copy-mode transmit):",
            *(f"  {label:<46} {r.ns_per_frame[k]:6.0f}" for k, label in COSTS.items()),
            f"  capacity ratio AF_PACKET / xsk: {r.capacity_ratio:.1f}x (a byte read), "
            f"{r.capacity_ratio_length:.1f}x (the length read)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.seconds, args.reps)
    print(json.dumps(r.as_dict(), indent=2) if args.json else table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

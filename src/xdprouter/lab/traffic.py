"""Load sources for the lab: the closed loop, and the programs every source uses.

Every source is driven by real frames (bpf/traffic.bpf.c), never by
BPF_PROG_RUN's live-frames mode, which some kernels refuse. ``Loop``: XDP
programs on both hosts of a lab send every frame of the loop that arrives
back into the router (``XDP_TX``), written afresh from that host's
template, until a shared budget is spent. A few hundred frames injected once
keep the router busy from both sides; the router is the only thing between
the hosts, so the rate is the router's plus a fixed cost per frame at the
hosts. Every frame the router forwards is counted once, on arrival, and with
fewer frames in flight than a veth ring holds no ring can overflow: a frame
that goes missing is a frame the router lost. The one-way sources (the GSO
injector, the flood generator) are in ``feeds.py``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..dataplane import abi, bpf, xdp
from ..dataplane.abi import GenCount, GenSlot, LoopStateSlot
from ..errors import UsageError
from ..router import default_object_path as default_router_object
from . import Lab, Scoped, netns

LOOP_DPORT = 9  # the loop's and the injector's UDP destination port (discard)
RING_SIZE = 256  # a veth rx ring (VETH_RING_SIZE): the loop keeps fewer frames in flight
IN_FLIGHT = 128  # frames in the loop: full receive batches on every hop, half a ring at most


def default_object_path() -> Path:
    """Beside the router's object (build/, or where XDPROUTER_BPF_OBJECT points)."""
    return default_router_object().parent / "traffic.bpf.o"


@dataclass
class SendResult:
    frames: int
    seconds: float
    ns_per_frame: int = 0  # send_through: BPF_PROG_RUN's average per frame


@dataclass
class LoopResult:
    """One closed-loop run: what the router forwarded, and how fast."""

    in_flight: int  # frames injected
    forwarded: int  # frames that arrived at a host: each was forwarded once by the router
    retired: int  # frames that arrived after the budget was spent (= in_flight when none was lost)
    window_frames: int  # forwarded between the two clock reads
    window_seconds: float
    seconds: float  # the whole run, injection to the last retirement

    @property
    def pps(self) -> float:
        return self.window_frames / self.window_seconds if self.window_seconds > 0 else 0.0

    @property
    def lost(self) -> int:
        return self.in_flight - self.retired


@dataclass(frozen=True)
class Vary:
    """How a template's frames differ (counting up from the template's own):
    ``flows`` source ports, ``dsts`` destinations and ``srcs`` sources, the
    addresses in steps of ``1 << shift``."""

    flows: int = 1
    dsts: int = 1
    dst_shift: int = 0
    srcs: int = 1
    src_shift: int = 0


@contextlib.contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """Run the block on one CPU: veth runs a NAPI on the CPU that scheduled
    it, so whatever this process sends is received on ``cpu`` too."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu if cpu in cpus else min(cpus)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


class Traffic:
    """The programs and maps of bpf/traffic.bpf.c, loaded once."""

    def __init__(self, object_path: str | os.PathLike[str] | None = None) -> None:
        path = Path(object_path) if object_path else default_object_path()
        if not path.exists():
            raise UsageError(f"BPF object {path} not found: run `make bpf` first")
        # multi-buffer like the router wherever it is (xdp_gen_chain tail-calls
        # it; the kernel refuses a prog array mixing the two kinds)
        self._obj = bpf.Object(str(path), frags=xdp.frags_supported())
        self.loop_a = self._obj.program("xdp_loop_a")
        self.loop_b = self._obj.program("xdp_loop_b")
        self.inject = self._obj.program("xdp_inject")
        self.sink = self._obj.program("xdp_sink")
        self.pass_ = self._obj.program("xdp_pass")
        self.drop = self._obj.program("xdp_drop")
        self.wire = self._obj.program("xdp_wire")
        self.flood = self._obj.program("xdp_flood")
        self.flood_back = self._obj.program("xdp_flood_back")
        self._flood_ports = self._obj.map("flood_ports")
        self._wire_ports = self._obj.map("wire_ports")
        self._chain = self._obj.program("xdp_gen_chain")
        self._next = self._obj.map("gen_next")
        self._config = self._obj.map("gen_config")
        self._seq = self._obj.map("gen_seq")
        self._counts = self._obj.map("gen_counts")
        self._loop = self._obj.map("loop_state")

    def close(self) -> None:
        self._obj.close()

    def __enter__(self) -> Traffic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def configure(self, slot: GenSlot, frame: bytes, vary: Vary = Vary(), *, ifindex: int = 0) -> None:
        """Make ``frame`` (Ethernet, IP, UDP) the template of ``slot``; its
        sequence starts again at frame 0."""
        ipv6 = frame[12:14] == b"\x86\xdd"
        udp = 54 if ipv6 else 34
        if len(frame) < udp + 8 or (not ipv6 and frame[12:14] != b"\x08\x00"):
            raise UsageError("frames must hold Ethernet, IP and UDP headers")
        config = abi.GenConfig(
            flows=vary.flows,
            dsts=vary.dsts,
            dst_shift=vary.dst_shift,
            ipv6=int(ipv6),
            srcs=vary.srcs,
            src_shift=vary.src_shift,
            ifindex=ifindex,
            dport=int.from_bytes(frame[udp + 2 : udp + 4], "big"),
        )
        config.header[:] = list(frame[: abi.GEN_HDR_LEN].ljust(abi.GEN_HDR_LEN, b"\0"))
        self._config.update(slot, config)
        self._seq.zero(slot)

    def counted(self, slot: GenCount) -> abi.Counter:
        """Frames and bytes counted in ``slot``, over all CPUs."""
        total = abi.Counter()
        for c in self._counts.lookup_per_cpu(slot, abi.Counter):
            total.packets += c.packets  # type: ignore[attr-defined]
            total.bytes += c.bytes  # type: ignore[attr-defined]
        return total

    def received(self) -> abi.Counter:
        """What the sink has counted."""
        return self.counted(GenCount.SINK)

    def reset(self) -> None:
        for slot in GenCount:
            self._counts.zero(slot)

    def loop_state(self, slot: LoopStateSlot) -> abi.LoopState:
        raw = self._loop.lookup(slot)
        assert raw is not None
        return abi.LoopState.from_buffer_copy(raw)

    def start_budget(self, slot: LoopStateSlot, total: int, in_flight: int) -> tuple[int, int]:
        """A budget of ``total - in_flight`` in ``slot``, its window the middle
        of the run (a tenth at each end left out: filling up and draining);
        returns (budget, frames in the window)."""
        budget = total - in_flight
        edge = max(in_flight, budget // 10)
        state = abi.LoopState(budget=budget, mark_start=budget - edge, mark_end=edge)
        self._loop.update(slot, state)
        return budget, budget - 2 * edge

    def wait_retired(self, slot: LoopStateSlot, in_flight: int, deadline: float) -> abi.LoopState:
        """Until every frame in flight has retired, or none has for a while
        after the budget ran out (a frame lost), or the deadline."""
        last, since = -1, time.monotonic()
        while True:
            state = self.loop_state(slot)
            now = time.monotonic()
            if state.retired >= in_flight or now > deadline:
                return state
            if state.retired != last:
                last, since = state.retired, now
            elif state.budget <= 0 and now - since > 1.0:
                return state
            time.sleep(0.005)

    def send_through(
        self, program: bpf.Program | None, ifindex: int, frame: bytes, count: int, vary: Vary
    ) -> SendResult:
        """Run ``program`` on ``count`` frames of the template's sequence,
        back to back in one BPF_PROG_RUN (not live: the program's verdicts
        are counted, the frames go nowhere), as if they had arrived on
        ``ifindex``. ``None``: the generator alone. ``ns_per_frame`` is
        BPF_PROG_RUN's own average."""
        self.configure(GenSlot.CHAIN, frame, vary)
        if program is not None:
            self._next.update(0, program.fd)
        start = time.perf_counter()
        try:
            run = self._chain.test_run(frame, ingress_ifindex=ifindex, repeat=count)
        finally:
            if program is not None:
                self._next.delete(0)
        return SendResult(count, time.perf_counter() - start, run.duration_ns)

    def wire_ports(self, a: int, b: int) -> None:
        """``xdp_wire`` hands a frame from interface ``a`` to ``b`` and back."""
        for src, dst in ((a, b), (b, a)):
            self._wire_ports.update(src, dst)

    def flood_ports(self, loop: int, out: int) -> None:
        """``xdp_flood`` broadcasts to ``loop`` (round again) and ``out``."""
        for key, ifindex in enumerate((loop, out)):
            self._flood_ports.update(key, ifindex)

    def attach(self, ns: str, iface: str, program: bpf.Program, mode: str = "native") -> None:
        with netns(ns):
            xdp.attach(socket.if_nametoindex(iface), program.fd, mode)

    @staticmethod
    def detach(ns: str, iface: str, mode: str = "native") -> None:
        with netns(ns), contextlib.suppress(OSError):
            xdp.detach(socket.if_nametoindex(iface), mode)


def _other_cpu(cpu: int) -> int:
    others = sorted(os.sched_getaffinity(0) - {cpu})
    return others[0] if others else cpu


def _raw_socket(ns: str, iface: str) -> socket.socket:
    with netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((iface, 0))
    return sock


def window_seconds(state: abi.LoopState) -> float:
    return (state.t_end - state.t_start) / 1e9 if state.t_end > state.t_start else 0.0


def run_budget(
    t: Traffic, slot: LoopStateSlot, ns: str, iface: str, frame: bytes, in_flight: int, cpu: int, timeout: float
) -> tuple[abi.LoopState, float]:
    """Inject ``in_flight`` copies of ``frame`` out of ``iface`` from ``cpu``
    (the frames' NAPI work stays there) and wait, on another CPU, for the
    budget in ``slot`` to be spent and every frame to retire; the state then,
    and the seconds it took."""
    sock = _raw_socket(ns, iface)
    deadline = time.monotonic() + timeout
    try:
        with on_cpu(cpu):
            start = time.monotonic()
            for _ in range(in_flight):
                sock.send(frame)
        with on_cpu(_other_cpu(cpu)):  # the frames keep cpu to themselves
            state = t.wait_retired(slot, in_flight, deadline)
    finally:
        sock.close()
    return state, time.monotonic() - start


class Loop(Scoped):
    """The closed loop between ``lab.h1`` and ``lab.h2`` (both attached on
    entry, detached on exit). ``run`` takes the frame each host sends to the
    router; what the router does with it is its configuration's business."""

    def __init__(self, traffic: Traffic, lab: Lab) -> None:
        self.traffic = traffic
        self.lab = lab

    def _open(self) -> None:
        self.traffic.attach(self.lab.h1.ns, self.lab.h1.iface, self.traffic.loop_a)
        self.traffic.attach(self.lab.h2.ns, self.lab.h2.iface, self.traffic.loop_b)

    def close(self) -> None:
        for host in (self.lab.h1, self.lab.h2):
            self.traffic.detach(host.ns, host.iface)

    def run(
        self,
        frame_a: bytes,
        frame_b: bytes,
        total: int,
        *,
        vary_a: Vary = Vary(),
        vary_b: Vary = Vary(),
        in_flight: int = IN_FLIGHT,
        cpu: int = 0,
        timeout: float | None = None,
    ) -> LoopResult:
        """Forward ``total`` frames through the router: ``in_flight`` injected
        by h1, the rest bounced by both hosts. The window timed is the middle
        of the run (a tenth at each end left out: the loop filling up and
        draining). Waits for every frame to retire, or until ``timeout``
        (default: long enough for 20,000 frames a second) has passed."""
        if len(frame_a) != len(frame_b):
            raise UsageError("both hosts' frames must have the same length")
        if not 0 < in_flight < RING_SIZE or total < 4 * in_flight:
            raise UsageError(f"a loop needs 1-{RING_SIZE - 1} frames in flight and at least 4 times as many in total")
        t = self.traffic
        t.configure(GenSlot.SIDE_A, frame_a, vary_a)
        t.configure(GenSlot.SIDE_B, frame_b, vary_b)
        t.reset()
        _, window_frames = t.start_budget(LoopStateSlot.LOOP, total, in_flight)
        state, seconds = run_budget(
            t,
            LoopStateSlot.LOOP,
            self.lab.h1.ns,
            self.lab.h1.iface,
            frame_a,
            in_flight,
            cpu,
            timeout or 10 + total / 20_000,
        )
        forwarded = t.counted(GenCount.SIDE_A).packets + t.counted(GenCount.SIDE_B).packets
        return LoopResult(in_flight, forwarded, state.retired, window_frames, window_seconds(state), seconds)

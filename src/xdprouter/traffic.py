"""Load sources for the lab: a closed loop, an injector, and a counting sink.

Both sources are driven by real frames (bpf/traffic.bpf.c), never by
BPF_PROG_RUN's live-frames mode, which some kernels refuse:

* ``Loop``: XDP programs on both hosts of a lab send every frame of the loop
  that arrives back into the router (``XDP_TX``), written afresh from that
  host's template, until a shared budget is spent. A few hundred frames
  injected once keep the router busy from both sides; the router is the only
  thing between the hosts, so the rate is the router's plus a fixed cost per
  frame at the hosts. Every frame the router forwards is counted once, on
  arrival, and with fewer frames in flight than a veth ring holds no ring can
  overflow: a frame that goes missing is a frame the router lost.
* ``Injector``: one-way frames in receive batches of a chosen size. A UDP
  GSO send into a veth pair inside the sending host arrives there as up to 64
  segments in one NAPI poll; an XDP program writes each as the next frame of
  the template's sequence and redirects it out of the host's interface, so
  the router receives the batch in one poll too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .dataplane import abi, bpf
from .dataplane.abi import GenCount, GenSlot, LoopStateSlot
from .errors import UsageError
from .lab import Host, Lab, netns

LOOP_DPORT = 9  # the loop's and the injector's UDP destination port (discard)
RING_SIZE = 256  # a veth rx ring (VETH_RING_SIZE): the loop keeps fewer frames in flight
IN_FLIGHT = 128  # frames in the loop: full receive batches on every hop, half a ring at most
UDP_SEGMENT = 103  # linux/udp.h: the GSO segment size of a UDP send
MAX_SEGMENTS = 64  # segments of one UDP GSO send: a veth NAPI poll's budget
_CARRIER = 14 + 20 + 8  # Ethernet, IPv4 and UDP headers of the injector's carrier frames
_INJ_NEAR, _INJ_FAR = "xinj0", "xinj1"  # the injector's veth pair, inside the sending host
_FLOOD_NEAR, _FLOOD_FAR = "xfld0", "xfld1"  # the flood generator's veth pair, likewise
_INJ_ADDR, _INJ_PEER = "198.18.255.253", "198.18.255.254"  # its carrier addresses (a /30 of 198.18.0.0/15)


def default_object_path() -> Path:
    return Path(__file__).resolve().parents[2] / "build" / "traffic.bpf.o"


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
        self._obj = bpf.Object(str(path))
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
        self._config.update(ctypes.c_uint32(slot), config)
        self._seq.update(ctypes.c_uint32(slot), bytes(8 * bpf.possible_cpus()))

    def counted(self, slot: GenCount) -> abi.Counter:
        """Frames and bytes counted in ``slot``, over all CPUs."""
        total = abi.Counter()
        for c in self._counts.lookup_per_cpu(ctypes.c_uint32(slot), abi.Counter):
            total.packets += c.packets  # type: ignore[attr-defined]
            total.bytes += c.bytes  # type: ignore[attr-defined]
        return total

    def received(self) -> abi.Counter:
        """What the sink has counted."""
        return self.counted(GenCount.SINK)

    def reset(self) -> None:
        zero = bytes(((ctypes.sizeof(abi.Counter) + 7) // 8 * 8) * bpf.possible_cpus())
        for slot in GenCount:
            self._counts.update(ctypes.c_uint32(slot), zero)

    def loop_state(self, slot: LoopStateSlot) -> abi.LoopState:
        raw = self._loop.lookup(ctypes.c_uint32(slot))
        assert raw is not None
        return abi.LoopState.from_buffer_copy(raw)

    def start_budget(self, slot: LoopStateSlot, total: int, in_flight: int) -> tuple[int, int]:
        """A budget of ``total - in_flight`` in ``slot``, its window the middle
        of the run (a tenth at each end left out: filling up and draining);
        returns (budget, frames in the window)."""
        budget = total - in_flight
        edge = max(in_flight, budget // 10)
        state = abi.LoopState(budget=budget, mark_start=budget - edge, mark_end=edge)
        self._loop.update(ctypes.c_uint32(slot), state)
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
            self._next.update(ctypes.c_uint32(0), ctypes.c_uint32(program.fd))
        start = time.perf_counter()
        try:
            run = self._chain.test_run(frame, ingress_ifindex=ifindex, repeat=count)
        finally:
            if program is not None:
                self._next.delete(ctypes.c_uint32(0))
        return SendResult(count, time.perf_counter() - start, run.duration_ns)

    def wire_ports(self, a: int, b: int) -> None:
        """``xdp_wire`` hands a frame from interface ``a`` to ``b`` and back."""
        for src, dst in ((a, b), (b, a)):
            self._wire_ports.update(ctypes.c_uint32(src), ctypes.c_uint32(dst))

    def flood_ports(self, loop: int, out: int) -> None:
        """``xdp_flood`` broadcasts to ``loop`` (round again) and ``out``."""
        for key, ifindex in enumerate((loop, out)):
            self._flood_ports.update(ctypes.c_uint32(key), ctypes.c_uint32(ifindex))

    def attach(self, ns: str, iface: str, program: bpf.Program, mode: str = "native") -> None:
        with netns(ns):
            bpf.xdp_attach(socket.if_nametoindex(iface), program.fd, mode)

    @staticmethod
    def detach(ns: str, iface: str, mode: str = "native") -> None:
        with netns(ns), contextlib.suppress(OSError):
            bpf.xdp_detach(socket.if_nametoindex(iface), mode)


def _other_cpu(cpu: int) -> int:
    others = sorted(os.sched_getaffinity(0) - {cpu})
    return others[0] if others else cpu


def _raw_socket(ns: str, iface: str) -> socket.socket:
    with netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((iface, 0))
    return sock


def _window(state: abi.LoopState) -> float:
    return (state.t_end - state.t_start) / 1e9 if state.t_end > state.t_start else 0.0


def _run_budget(
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


class Loop:
    """The closed loop between ``lab.h1`` and ``lab.h2`` (both attached on
    entry, detached on exit). ``run`` takes the frame each host sends to the
    router; what the router does with it is its configuration's business."""

    def __init__(self, traffic: Traffic, lab: Lab) -> None:
        self.traffic = traffic
        self.lab = lab

    def __enter__(self) -> Loop:
        try:
            self.traffic.attach(self.lab.h1.ns, self.lab.h1.iface, self.traffic.loop_a)
            self.traffic.attach(self.lab.h2.ns, self.lab.h2.iface, self.traffic.loop_b)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        state, seconds = _run_budget(
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
        return LoopResult(in_flight, forwarded, state.retired, window_frames, _window(state), seconds)


class Injector:
    """One-way frames out of ``host``'s interface, in receive batches of up to
    64: a veth pair inside the host (created on entry, removed on exit), UDP
    GSO sends into its near end, ``xdp_inject`` on its far end."""

    def __init__(self, traffic: Traffic, lab: Lab, host: Host) -> None:
        self.traffic = traffic
        self.lab = lab
        self.host = host
        self._sock: socket.socket | None = None
        self.ifindex = 0

    def __enter__(self) -> Injector:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        ns, lab = self.host.ns, self.lab
        lab.ip(ns, "link", "add", _INJ_NEAR, "type", "veth", "peer", "name", _INJ_FAR)
        for iface in (_INJ_NEAR, _INJ_FAR):
            lab.sysctl(ns, f"net.ipv6.conf.{iface}.disable_ipv6", "1")
            lab.ip(ns, "link", "set", iface, "up")
        lab.ip(ns, "addr", "add", f"{_INJ_ADDR}/30", "dev", _INJ_NEAR)
        lab.ip(ns, "neigh", "replace", _INJ_PEER, "lladdr", lab.mac(ns, _INJ_FAR), "dev", _INJ_NEAR, "nud", "permanent")
        # segmented in software before the veth, so the segments reach the
        # far end one by one, all within one transmit call
        lab.run(ns, "ethtool", "-K", _INJ_NEAR, "tx-udp-segmentation", "off")
        self.traffic.attach(ns, _INJ_FAR, self.traffic.inject)
        with netns(ns):
            self.ifindex = socket.if_nametoindex(self.host.iface)
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((_INJ_ADDR, 0))

    def close(self) -> None:
        if self._sock:
            self._sock.close()
            self._sock = None
        if os.path.exists(f"/run/netns/{self.host.ns}"):
            self.lab.ip(self.host.ns, "link", "del", _INJ_NEAR, check=False)

    def send(
        self, frame: bytes, count: int, vary: Vary = Vary(), *, batch: int = MAX_SEGMENTS, cpu: int = 0
    ) -> SendResult:
        """Send ``count`` frames of ``frame``'s sequence in batches of
        ``batch`` (each one NAPI poll at the router). Returns when the last
        batch is sent; the kernel may still be forwarding it."""
        assert self._sock is not None
        seg = len(frame) - _CARRIER
        if seg < 1:
            raise UsageError(f"frames must be longer than {_CARRIER} bytes")
        batch = max(1, min(batch, MAX_SEGMENTS, 65507 // seg))
        self.traffic.configure(GenSlot.INJECT, frame, vary, ifindex=self.ifindex)
        self._sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, seg if batch > 1 else 0)
        payload = bytes(seg * batch)
        peer = (_INJ_PEER, LOOP_DPORT)
        full, rest = divmod(count, batch)
        with on_cpu(cpu):
            start = time.perf_counter()
            for _ in range(full):
                self._sock.sendto(payload, peer)
            if rest:
                self._sock.sendto(payload[: seg * rest], peer)
            return SendResult(count, time.perf_counter() - start)

    def sent(self) -> int:
        """Frames the injector has sent toward the router since the last reset."""
        return self.traffic.counted(GenCount.INJECT).packets


@dataclass
class FloodResult:
    """One flood: frames sent toward the router, and how fast."""

    sent: int
    window_frames: int  # sent within the timed window
    window_seconds: float
    lost: int  # generator frames that never retired

    @property
    def pps(self) -> float:
        return self.window_frames / self.window_seconds if self.window_seconds > 0 else 0.0


class Flood:
    """One-way frames out of ``host``'s interface as fast as one core makes
    them and the router takes them: a few frames go round a veth pair inside
    the host (``xdp_flood`` and ``xdp_flood_back``), and each round a copy of
    the next frame of the template's sequence leaves for the router (a devmap
    broadcast: one page and one copy a frame). The pair is created on entry
    and removed on exit."""

    def __init__(self, traffic: Traffic, lab: Lab, host: Host) -> None:
        self.traffic = traffic
        self.lab = lab
        self.host = host
        self.ifindex = 0

    def __enter__(self) -> Flood:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        ns, lab, t = self.host.ns, self.lab, self.traffic
        lab.ip(ns, "link", "add", _FLOOD_NEAR, "type", "veth", "peer", "name", _FLOOD_FAR)
        for iface in (_FLOOD_NEAR, _FLOOD_FAR):
            lab.sysctl(ns, f"net.ipv6.conf.{iface}.disable_ipv6", "1")
            lab.ip(ns, "link", "set", iface, "up")
        t.attach(ns, _FLOOD_NEAR, t.flood_back)
        t.attach(ns, _FLOOD_FAR, t.flood)
        with netns(ns):  # a devmap resolves an ifindex in the caller's namespace
            self.ifindex = socket.if_nametoindex(self.host.iface)
            t.flood_ports(socket.if_nametoindex(_FLOOD_FAR), self.ifindex)

    def close(self) -> None:
        if os.path.exists(f"/run/netns/{self.host.ns}"):
            self.lab.ip(self.host.ns, "link", "del", _FLOOD_NEAR, check=False)

    def run(self, frame: bytes, total: int, vary: Vary = Vary(), *, in_flight: int = 64, cpu: int = 0) -> FloodResult:
        """Send ``total`` frames of ``frame``'s sequence; returns when the
        generator's frames have all retired."""
        if not 0 < in_flight < RING_SIZE or total < 4 * in_flight:
            raise UsageError(f"a flood needs 1-{RING_SIZE - 1} frames in flight and at least 4 times as many in total")
        t = self.traffic
        t.configure(GenSlot.INJECT, frame, vary)
        sent0 = t.counted(GenCount.INJECT).packets
        _, window_frames = t.start_budget(LoopStateSlot.FLOOD, total + in_flight, in_flight)
        state, _ = _run_budget(
            t, LoopStateSlot.FLOOD, self.host.ns, _FLOOD_NEAR, frame, in_flight, cpu, 10 + total / 20_000
        )
        sent = t.counted(GenCount.INJECT).packets - sent0
        return FloodResult(sent, window_frames, _window(state), in_flight - state.retired)

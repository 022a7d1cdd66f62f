"""Load generation with BPF_PROG_RUN live frames, and an XDP sink that counts.

The generator runs ``xdp_gen`` (bpf/traffic.bpf.c) in live-frames mode on a
host's interface: each frame leaves through that interface (XDP_TX becomes a
redirect back out of the "ingress" device), so a sending host pushes millions
of frames per second into the router without sockets or skbs. The sink on the
receiving host counts what arrives and drops it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import abi, bpf
from .errors import UsageError


def default_object_path() -> Path:
    return Path(__file__).resolve().parents[2] / "build" / "traffic.bpf.o"


@dataclass
class SendResult:
    frames: int
    seconds: float
    ns_per_frame: int = 0  # send_through: BPF_PROG_RUN's average per frame


@contextlib.contextmanager
def _one_cpu() -> Iterator[None]:
    """Keep the sender on one CPU: veth runs a peer's NAPI on the CPU that
    woke it, so a sender that moved to another CPU between batches would
    leave the receiving NAPI behind, and a ring between them could overflow
    (frames lost under load from other processes)."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


class Traffic:
    """The generator and the sink, loaded once; use from the right netns."""

    def __init__(self, object_path: str | os.PathLike[str] | None = None) -> None:
        path = Path(object_path) if object_path else default_object_path()
        if not path.exists():
            raise UsageError(f"BPF object {path} not found: run `make bpf` first")
        self._obj = bpf.Object(str(path))
        self.gen = self._obj.program("xdp_gen")
        self._chain = self._obj.program("xdp_gen_chain")
        self._next = self._obj.map("gen_next")
        self.sink = self._obj.program("xdp_sink")
        self._config = self._obj.map("gen_config")
        self._seq = self._obj.map("gen_seq")
        self._count = self._obj.map("sink_count")

    def close(self) -> None:
        self._obj.close()

    def __enter__(self) -> Traffic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self,
        ifindex: int,
        frame: bytes,
        count: int,
        *,
        flows: int = 1,
        dsts: int = 1,
        dst_shift: int = 0,
        srcs: int = 1,
        src_shift: int = 0,
        batch_size: int = 64,
    ) -> SendResult:
        """Send ``count`` copies of ``frame`` out of ``ifindex`` (caller's netns).

        ``flows`` source ports, ``dsts`` destination addresses and ``srcs``
        source addresses, counting up from the frame's own (addresses in steps
        of ``1 << dst_shift`` and ``1 << src_shift``), are cycled through.
        """
        self._configure(frame, flows=flows, dsts=dsts, dst_shift=dst_shift, srcs=srcs, src_shift=src_shift)
        with _one_cpu():
            start = time.perf_counter()
            self.gen.test_run(frame, ingress_ifindex=ifindex, repeat=count, live_frames=True, batch_size=batch_size)
            return SendResult(count, time.perf_counter() - start)

    def send_through(
        self,
        program: bpf.Program | None,
        ifindex: int,
        frame: bytes,
        count: int,
        *,
        live_batch: int = 0,
        **vary: int,
    ) -> SendResult:
        """Run ``program`` on the frames ``send`` would make, back to back in
        one BPF_PROG_RUN, as if they had arrived on ``ifindex``. Not live by
        default: the program counts its verdicts, the frames go nowhere.
        ``live_batch``: live frames in batches of that many, as a driver's
        receive batches (NAPI polls); the program's verdicts are carried out.
        ``None``: the generator alone. ``ns_per_frame`` is BPF_PROG_RUN's own
        average."""
        self._configure(frame, **vary)
        if program is not None:
            self._next.update(ctypes.c_uint32(0), ctypes.c_uint32(program.fd))
        start = time.perf_counter()
        try:
            with _one_cpu():
                run = self._chain.test_run(
                    frame, ingress_ifindex=ifindex, repeat=count, live_frames=live_batch > 0, batch_size=live_batch
                )
        finally:
            if program is not None:
                self._next.delete(ctypes.c_uint32(0))
        return SendResult(count, time.perf_counter() - start, run.duration_ns)

    def _configure(
        self, frame: bytes, *, flows: int = 1, dsts: int = 1, dst_shift: int = 0, srcs: int = 1, src_shift: int = 0
    ) -> None:
        ipv6 = frame[12:14] == b"\x86\xdd"
        if len(frame) < (62 if ipv6 else 42):
            raise UsageError("frames must hold Ethernet, IP and UDP headers")
        config = abi.GenConfig(
            flows=flows, dsts=dsts, dst_shift=dst_shift, ipv6=int(ipv6), srcs=srcs, src_shift=src_shift
        )
        header = frame[: abi.GEN_HDR_LEN].ljust(abi.GEN_HDR_LEN, b"\0")
        config.header[:] = list(header)
        self._config.update(ctypes.c_uint32(0), config)
        self._seq.update(ctypes.c_uint32(0), bytes(8 * bpf.possible_cpus()))  # every run starts at frame 0

    def attach_sink(self, ifindex: int, mode: str = "native") -> None:
        bpf.xdp_attach(ifindex, self.sink.fd, mode)

    @staticmethod
    def detach_sink(ifindex: int, mode: str = "native") -> None:
        bpf.xdp_detach(ifindex, mode)

    def received(self) -> abi.Counter:
        """Frames and bytes the sink has counted, over all CPUs."""
        total = abi.Counter()
        for c in self._count.lookup_per_cpu(ctypes.c_uint32(0), abi.Counter):
            total.packets += c.packets  # type: ignore[attr-defined]
            total.bytes += c.bytes  # type: ignore[attr-defined]
        return total

    def reset(self) -> None:
        zero = bytes(((ctypes.sizeof(abi.Counter) + 7) // 8 * 8) * bpf.possible_cpus())
        self._count.update(ctypes.c_uint32(0), zero)

"""``xdprouter capture``: the frames the fast path saw on an interface, as
pcapng, each with its verdict and reason as the packet comment.

The router program checks once per frame whether a capture runs (the
``xdpr_capture`` map, ``bpf/include/capture.h``); while one does, frames of
its interface that pass its filter (verdicts, reason), applied in the kernel,
come up through a perf buffer (``xdpr_cap_events``) as the program left them:
unchanged for ``pass``/``drop``, with the new MACs and TTL for
``redirect``/``tx``. One capture per namespace at a time; the filter is
cleared when it ends (and taken over from a capture process that died).
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import netlink
from .cliargs import ranged_float, ranged_int
from .dataplane import abi, bpf, xdp
from .dataplane.perf import PerfBuffer
from .errors import UsageError
from .router import Router

VERDICTS = ("aborted", "drop", "pass", "tx", "redirect")  # XDP action numbers 0..4
NO_REASON = abi.CAPTURE_ANY_REASON
MAP_CAPTURE, MAP_EVENTS = "xdpr_capture", "xdpr_cap_events"  # bpf/include/capture.h

EXAMPLES = """\
examples:
  xdprouter capture eth0 -w all.pcapng                   every frame, until Ctrl-C
  xdprouter capture eth0 --verdict pass --count 100 -w passed.pcapng
  xdprouter capture eth0 --reason no_neigh -w unresolved.pcapng
  tcpdump -r passed.pcapng -nn                           read it back (Wireshark shows the comments)
Frames are written as the program left them: rewritten (MACs, TTL) when forwarded.
"""


@dataclass(frozen=True)
class Frame:
    ktime_ns: int
    ifindex: int
    verdict: str
    reason: str | None
    length: int
    data: bytes

    @property
    def comment(self) -> str:
        return f"verdict={self.verdict} reason={self.reason or 'unknown'}"


class PcapngWriter:
    """A pcapng file of Ethernet frames on one interface: a section header,
    an interface description (microsecond timestamps), then one enhanced
    packet block per frame with ``opt_comment`` (option 1)."""

    def __init__(self, f: BinaryIO, ifname: str, snaplen: int) -> None:
        self.f = f
        shb = struct.pack("=IHHq", 0x1A2B3C4D, 1, 0, -1) + self._options([(4, b"xdprouter capture")])
        self._block(0x0A0D0D0A, shb)
        idb = struct.pack("=HHI", 1, 0, snaplen) + self._options([(2, ifname.encode()), (9, b"\x06")])
        self._block(0x00000001, idb)

    @staticmethod
    def _options(opts: list[tuple[int, bytes]]) -> bytes:
        out = b""
        for code, value in opts:
            out += struct.pack("=HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
        return out + struct.pack("=HH", 0, 0)

    def _block(self, kind: int, body: bytes) -> None:
        length = 12 + len(body)
        self.f.write(struct.pack("=II", kind, length) + body + struct.pack("=I", length))

    def write(self, wall_ns: int, data: bytes, length: int, comment: str) -> None:
        usec = wall_ns // 1000
        epb = struct.pack("=IIIII", 0, usec >> 32, usec & 0xFFFFFFFF, len(data), length)
        epb += data + b"\0" * (-len(data) % 4) + self._options([(1, comment.encode())])
        self._block(0x00000006, epb)


def _router_maps(ifindex: int, iface: str) -> dict[str, bpf.Map]:
    """The capture maps of the router program attached to ``iface``."""
    state = xdp.query(ifindex)
    if not state.prog_id:
        raise UsageError(f"xdprouter is not attached to {iface}")
    with bpf.opened_program(state.prog_id) as prog:
        if bytes(prog.info().name).rstrip(b"\0").decode() != "xdp_router":
            raise UsageError(f"{iface}'s XDP program (id {state.prog_id}) is not xdprouter's")
        maps = {}
        for map_id in prog.map_ids():
            m = bpf.Map.from_id(map_id)
            if m.name in (MAP_CAPTURE, MAP_EVENTS):
                maps[m.name] = m
            else:
                m.close()
    if len(maps) != 2:
        for m in maps.values():
            m.close()
        raise UsageError(f"the router program on {iface} predates capture: `xdprouter detach --all` and attach again")
    return maps


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Capture:
    """Frames of ``iface`` through the attached router program, filtered by
    verdict and reason in the kernel. Use as a context manager; ``poll``
    returns what arrived."""

    def __init__(
        self,
        iface: str,
        verdicts: list[str] | None = None,
        reason: str | None = None,
        snaplen: int = abi.CAPTURE_SNAPLEN_MAX,
    ) -> None:
        (link,) = netlink.resolve([iface])
        for v in verdicts or []:
            if v not in VERDICTS:
                raise UsageError(f"unknown verdict {v!r} (one of {', '.join(VERDICTS)})")
        reason_value = NO_REASON
        if reason is not None:
            try:
                reason_value = abi.Reason[reason.upper()].value
            except KeyError:
                names = ", ".join(r.name.lower() for r in abi.Reason)
                raise UsageError(f"unknown reason {reason!r} (one of {names})") from None
        if not 1 <= snaplen <= abi.CAPTURE_SNAPLEN_MAX:
            raise UsageError(f"snaplen must be 1..65535, not {snaplen}")
        self.iface, self.ifindex = iface, link.index
        self.frames: list[Frame] = []
        self.lost = 0
        self._pb: PerfBuffer | None = None
        self._armed = False
        self._maps = _router_maps(link.index, iface)
        try:
            raw = self._maps[MAP_CAPTURE].lookup(0)
            old = abi.CaptureConfig.from_buffer_copy(raw) if raw else abi.CaptureConfig()
            if old.ifindex and old.owner_pid != os.getpid() and _alive(old.owner_pid):
                raise UsageError(f"a capture is already running here (pid {old.owner_pid})")
            self._pb = PerfBuffer(self._maps[MAP_EVENTS], self._sample, self._lost)
            mask = sum(1 << VERDICTS.index(v) for v in verdicts) if verdicts else 0xFFFFFFFF
            cfg = abi.CaptureConfig(link.index, mask, reason_value, snaplen, os.getpid())
            self._maps[MAP_CAPTURE].update(0, cfg)
            self._armed = True
        except BaseException:
            self.close()
            raise

    def _sample(self, raw: bytes) -> None:
        meta = abi.CaptureMeta.from_buffer_copy(raw[: abi.CAPTURE_META_SIZE])
        ktime, ifindex, verdict, reason, length, caplen = (
            meta.ktime_ns,
            meta.ifindex,
            meta.verdict,
            meta.reason,
            meta.len,
            meta.caplen,
        )
        self.frames.append(
            Frame(
                ktime,
                ifindex,
                VERDICTS[verdict] if verdict < len(VERDICTS) else str(verdict),
                abi.Reason(reason).name.lower() if reason != NO_REASON else None,
                length,
                raw[abi.CAPTURE_META_SIZE : abi.CAPTURE_META_SIZE + caplen],
            )
        )

    def _lost(self, count: int) -> None:
        self.lost += count

    def poll(self, timeout_ms: int = 100) -> list[Frame]:
        """Frames captured since the last poll (waits up to ``timeout_ms``)."""
        assert self._pb is not None
        self._pb.poll(timeout_ms)
        frames, self.frames = self.frames, []
        return frames

    def close(self) -> None:
        if self._armed:
            self._armed = False
            self._maps[MAP_CAPTURE].update(0, abi.CaptureConfig())
        if self._pb is not None:
            self._pb.close()
            self._pb = None
        for m in self._maps.values():
            m.close()
        self._maps = {}

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_parser(sub: Any) -> None:
    c = sub.add_parser(
        "capture",
        help="frames the fast path saw, with verdict and reason, as pcapng (filtered in the kernel)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("iface", metavar="IFACE")
    c.add_argument("--verdict", action="append", choices=VERDICTS, help="only this verdict (repeatable)")
    c.add_argument("--reason", help="only this reason (as in `xdprouter stats`)")
    c.add_argument("--count", type=ranged_int(1, 2**31 - 1), help="stop after this many frames")
    c.add_argument("--seconds", type=ranged_float(0.001, 1e9, "seconds"), help="stop after this long")
    c.add_argument(
        "--snaplen",
        type=ranged_int(1, abi.CAPTURE_SNAPLEN_MAX, "bytes"),
        default=abi.CAPTURE_SNAPLEN_MAX,
        help="bytes kept of each frame",
    )
    c.add_argument("-w", "--write", required=True, metavar="FILE", help="pcapng file to write (- for stdout)")


def command(router: Router, args: argparse.Namespace) -> int:
    del router  # the capture finds the router program through the interface
    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with Capture(args.iface, args.verdict, args.reason, args.snaplen) as cap:
        out = sys.stdout.buffer if args.write == "-" else open(args.write, "wb")  # noqa: SIM115
        try:
            writer = PcapngWriter(out, args.iface, args.snaplen)
            out.flush()
            print(f"capturing on {args.iface}", file=sys.stderr, flush=True)
            offset = time.time_ns() - time.monotonic_ns()  # bpf_ktime_get_ns() is CLOCK_MONOTONIC
            written = 0
            deadline = None if args.seconds is None else time.monotonic() + args.seconds
            while not stop and (args.count is None or written < args.count):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                for frame in cap.poll(100):
                    if args.count is not None and written >= args.count:
                        break
                    writer.write(frame.ktime_ns + offset, frame.data, frame.length, frame.comment)
                    written += 1
                out.flush()
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        lost = f", {cap.lost} lost (perf buffer full)" if cap.lost else ""
    print(f"{written} frames captured{lost}", file=sys.stderr)
    return 0

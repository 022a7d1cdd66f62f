"""One AF_XDP socket: an interface queue, its UMEM and its four rings, set
up with plain syscalls (Documentation/networking/af_xdp.rst), the rings'
producer/consumer indices kept here. The ring index arithmetic relies on
x86-64's store and load ordering (the project's only target); on weaker
memory models it would need barriers."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import select
import socket
import struct
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import netlink
from ..dataplane import afxdp
from ..errors import UsageError, XdpRouterError
from ..router import default_object_path as router_object_path

AF_XDP = afxdp.AF_XDP
SOL_XDP = 283
# linux/if_xdp.h
XDP_MMAP_OFFSETS, XDP_RX_RING, XDP_TX_RING, XDP_UMEM_REG = 1, 2, 3, 4
XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_STATISTICS, XDP_OPTIONS = 5, 6, 7, 8
XDP_COPY, XDP_ZEROCOPY, XDP_USE_NEED_WAKEUP = 1 << 1, 1 << 2, 1 << 3
XDP_RING_NEED_WAKEUP = 1
XDP_OPTIONS_ZEROCOPY = 1
PGOFF_RX, PGOFF_TX, PGOFF_FILL, PGOFF_COMPLETION = 0, 0x80000000, 0x100000000, 0x180000000
MODES = ("auto", "copy", "zerocopy")


class XskError(XdpRouterError):
    """An AF_XDP socket could not be set up; one line for the CLI."""


@dataclass(frozen=True)
class Statistics:
    """``XDP_STATISTICS`` of one socket (struct xdp_statistics)."""

    rx_dropped: int  # every frame dropped on receive (also counted under its cause, if one below)
    rx_invalid_descs: int
    tx_invalid_descs: int
    rx_ring_full: int  # the RX ring was full: Python did not keep up
    rx_fill_ring_empty_descs: int  # no free buffer in the fill ring
    tx_ring_empty_descs: int

    def __add__(self, other: Statistics) -> Statistics:
        return Statistics(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return (
            self.rx_dropped,
            self.rx_invalid_descs,
            self.tx_invalid_descs,
            self.rx_ring_full,
            self.rx_fill_ring_empty_descs,
            self.tx_ring_empty_descs,
        )


def default_object_path() -> Path:
    """Beside the router's object (build/, or where XDPROUTER_BPF_OBJECT points)."""
    return router_object_path().parent / "xsk_redirect.bpf.o"


def queue_count(iface: str) -> int:
    """Queues an XSK can bind on ``iface`` (in the caller's namespace): the
    smaller of its rx and tx queue counts (``ethtool -l``), as bind requires."""
    (link,) = netlink.resolve([iface])
    # struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined,
    # rx_count, tx_count, other_count, combined_count
    buf = array("I", [0x3C] + [0] * 8)  # ETHTOOL_GCHANNELS
    ifreq = struct.pack("16sQ", link.name.encode(), buf.buffer_info()[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), 0x8946, ifreq)  # SIOCETHTOOL
        except OSError:
            return 1  # no channel information: a single-queue device
    rx, tx, combined = buf[5], buf[6], buf[8]
    return max(1, min(rx + combined, tx + combined))


class _Ring:
    """One of the four rings, mmapped: producer and consumer indices, flags,
    and descriptors (16-byte xdp_desc for RX/TX, 8-byte addresses for the
    fill and completion rings), all viewed as native integers."""

    def __init__(self, fd: int, offsets: tuple[int, int, int, int], size: int, desc_size: int, pgoff: int) -> None:
        producer, consumer, desc, flags = offsets
        length = desc + size * desc_size
        self.map = mmap.mmap(fd, length, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), offset=pgoff)
        view = memoryview(self.map)
        self.words = view.cast("I")  # producer, consumer and flags, by word index
        self.prod, self.cons, self.flags = producer // 4, consumer // 4, flags // 4
        self.desc = view[desc:length].cast("Q")
        self.mask = size - 1
        self.size = size

    def need_wakeup(self) -> bool:
        return bool(self.words[self.flags] & XDP_RING_NEED_WAKEUP)

    def close(self) -> None:
        self.desc.release()
        self.words.release()
        self.map.close()


class Socket:
    """An AF_XDP socket bound to ``iface``'s rx/tx queue ``queue``, with a
    UMEM of ``frames`` buffers of ``frame_size`` bytes: half of them wait in
    the fill ring for received frames, half are for sending.

    Frames reach it only through an XDP program that redirects them into an
    XSKMAP entry holding this socket (see :class:`Redirector`). Create it in
    the namespace of the interface; it keeps working from any other.
    """

    def __init__(
        self,
        iface: str,
        queue: int = 0,
        *,
        frames: int = 4096,
        frame_size: int = 2048,
        ring_size: int = 2048,
        mode: str = "auto",
    ) -> None:
        if mode not in MODES:
            raise UsageError(f"unknown AF_XDP mode {mode!r} (one of {', '.join(MODES)})")
        for what, n in (("frames", frames), ("frame_size", frame_size), ("ring_size", ring_size)):
            if n <= 0 or n & (n - 1):
                raise UsageError(f"{what} must be a power of two, not {n}")
        if frame_size < 2048 or frame_size > mmap.PAGESIZE:
            raise UsageError(f"frame_size must be 2048..{mmap.PAGESIZE}, not {frame_size}")
        (link,) = netlink.resolve([iface])
        queues = queue_count(iface)
        if not 0 <= queue < queues:
            raise UsageError(
                f"{iface} has {queues} queue{'s' if queues > 1 else ''} (0..{queues - 1}), no queue {queue}"
            )
        self.iface, self.ifindex, self.queue = iface, link.index, queue
        self.frame_size = frame_size
        self._rings: list[_Ring] = []
        self._umem: mmap.mmap | None = None
        self._sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
        try:
            self._setup(frames, frame_size, ring_size, mode)
        except BaseException:
            self.close()
            raise

    def _setup(self, frames: int, frame_size: int, ring_size: int, mode: str) -> None:
        fd = self._sock.fileno()
        self._umem = mmap.mmap(-1, frames * frame_size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        addr = afxdp.buffer_address(self._umem)  # valid as long as the mapping
        # struct xdp_umem_reg: addr, len, chunk_size, headroom, flags, tx_metadata_len
        reg = struct.pack("QQIIII", addr, frames * frame_size, frame_size, 0, 0, 0)
        self._sockopt(XDP_UMEM_REG, reg, "registering the UMEM")
        half = min(ring_size, frames // 2)
        for opt, what in (
            (XDP_UMEM_FILL_RING, "fill"),
            (XDP_UMEM_COMPLETION_RING, "completion"),
            (XDP_RX_RING, "RX"),
            (XDP_TX_RING, "TX"),
        ):
            self._sockopt(opt, struct.pack("I", half), f"sizing the {what} ring")
        off = struct.unpack("16Q", self._sock.getsockopt(SOL_XDP, XDP_MMAP_OFFSETS, 128))
        self._rx = _Ring(fd, off[0:4], half, 16, PGOFF_RX)
        self._tx = _Ring(fd, off[4:8], half, 16, PGOFF_TX)
        self._fill = _Ring(fd, off[8:12], half, 8, PGOFF_FILL)
        self._comp = _Ring(fd, off[12:16], half, 8, PGOFF_COMPLETION)
        self._rings = [self._rx, self._tx, self._fill, self._comp]
        self._view = memoryview(self._umem)
        # the first half of the buffers to the fill ring, the rest free for TX
        self._held: list[int] = [i * frame_size for i in range(half)]
        self._release()
        self._free: list[int] = [i * frame_size for i in range(half, frames)]
        self._tx_buffers = frames - half
        flags = XDP_USE_NEED_WAKEUP | {"auto": 0, "copy": XDP_COPY, "zerocopy": XDP_ZEROCOPY}[mode]
        err = afxdp.bind_xsk(fd, self.ifindex, self.queue, flags)
        if err:
            why = {
                errno.EOPNOTSUPP: f"{self.iface}'s driver has no zero-copy AF_XDP",
                errno.EBUSY: f"queue {self.queue} of {self.iface} already has an AF_XDP socket",
            }.get(err, os.strerror(err))
            raise XskError(f"binding an AF_XDP socket to {self.iface} queue {self.queue}: {why}")
        (opts,) = struct.unpack("I", self._sock.getsockopt(SOL_XDP, XDP_OPTIONS, 4))
        self.zero_copy = bool(opts & XDP_OPTIONS_ZEROCOPY)

    def _sockopt(self, opt: int, value: bytes, what: str) -> None:
        try:
            self._sock.setsockopt(SOL_XDP, opt, value)
        except OSError as e:
            raise XskError(f"{what} of an AF_XDP socket: {e.strerror}") from None

    def fileno(self) -> int:
        return self._sock.fileno()

    def _release(self) -> None:
        """Give the buffers of the last batch back to the kernel (fill ring)."""
        held, ring = self._held, self._fill
        if not held:
            return
        words, desc, mask = ring.words, ring.desc, ring.mask
        prod = words[ring.prod]
        start = prod & mask
        n = len(held)
        if start + n <= ring.size:
            desc[start : start + n] = array("Q", held)
        else:
            for i, addr in enumerate(held):
                desc[(prod + i) & mask] = addr
        words[ring.prod] = (prod + n) & 0xFFFFFFFF
        held.clear()
        if ring.need_wakeup():
            self._wakeup_rx()

    def _wakeup_rx(self) -> None:
        try:
            self._sock.recv(0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass

    def pending(self) -> int:
        """Frames waiting in the RX ring."""
        words = self._rx.words
        return (words[self._rx.prod] - words[self._rx.cons]) & 0xFFFFFFFF

    def recv(self, max_frames: int = 64, timeout: float | None = 0) -> list[memoryview]:
        """Up to ``max_frames`` received frames, as memoryviews into the UMEM.

        Waits up to ``timeout`` seconds for the first (``None``: forever, 0:
        not at all). The views are valid until the next ``recv`` on this
        socket, which gives their buffers back to the kernel: copy
        (``bytes(frame)``) what must live longer.
        """
        self._release()
        ring = self._rx
        words = ring.words
        cons = words[ring.cons]
        n = (words[ring.prod] - cons) & 0xFFFFFFFF
        if not n and timeout != 0:
            select.select([self._sock], [], [], timeout)
            n = (words[ring.prod] - cons) & 0xFFFFFFFF
        if not n:
            return []
        if n > max_frames:
            n = max_frames
        desc, view = ring.desc, self._view
        start = cons & ring.mask
        if start + n <= ring.size:  # one slice of descriptors: read in one call
            words2 = desc[2 * start : 2 * (start + n)].tolist()
        else:
            first = ring.size - start
            words2 = desc[2 * start :].tolist() + desc[: 2 * (n - first)].tolist()
        # xdp_desc: addr, then len and options; options stay 0 without
        # XDP_USE_SG (never set here), so the second word is the length
        addrs = words2[0::2]
        self._held = addrs
        frames = [view[a : a + ln] for a, ln in zip(addrs, words2[1::2], strict=True)]
        words[ring.cons] = (cons + n) & 0xFFFFFFFF
        return frames

    def _reap(self) -> None:
        """Take back the buffers the kernel has sent (completion ring)."""
        ring = self._comp
        words = ring.words
        cons = words[ring.cons]
        n = (words[ring.prod] - cons) & 0xFFFFFFFF
        if n:
            desc, mask, free, chunk = ring.desc, ring.mask, self._free, ~(self.frame_size - 1)
            free.extend(desc[(cons + i) & mask] & chunk for i in range(n))
            words[ring.cons] = (cons + n) & 0xFFFFFFFF

    def send(self, frames: Iterable[bytes | bytearray | memoryview]) -> int:
        """Send frames out of the socket's interface and queue; each is
        copied into a free UMEM buffer. Returns how many were queued (fewer
        than given when the TX ring or the free buffers run out)."""
        self._reap()
        ring, view, free, size = self._tx, self._view, self._free, self.frame_size
        words, desc, mask = ring.words, ring.desc, ring.mask
        prod = words[ring.prod]
        room = ring.size - ((prod - words[ring.cons]) & 0xFFFFFFFF)
        sent = 0
        for frame in frames:
            if sent == room or not free:
                break
            n = len(frame)
            if n > size:
                raise UsageError(f"frame of {n} bytes does not fit a {size}-byte UMEM buffer")
            addr = free.pop()
            view[addr : addr + n] = frame
            j = ((prod + sent) & mask) << 1
            desc[j] = addr
            desc[j + 1] = n
            sent += 1
        if sent:
            words[ring.prod] = (prod + sent) & 0xFFFFFFFF
            self.kick()
        return sent

    def kick(self) -> None:
        """Make the kernel send what the TX ring holds (copy mode needs it)."""
        if not self._tx.need_wakeup():
            return
        try:
            self._sock.send(b"", socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOBUFS, errno.ENETDOWN):
                raise

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait until every frame sent has left (its buffer is back); False
        on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            if len(self._free) == self._tx_buffers:
                return True
            if time.monotonic() > deadline:
                return False
            self.kick()
            time.sleep(0.001)

    def stats(self) -> Statistics:
        raw = self._sock.getsockopt(SOL_XDP, XDP_STATISTICS, 48)
        return Statistics(*struct.unpack("6Q", raw))

    def close(self) -> None:
        """Close the socket and unmap everything. Views of frames a caller
        still holds keep the UMEM mapped until they are gone."""
        self._sock.close()
        for ring in self._rings:
            ring.close()
        self._rings = []
        if self._umem is not None:
            if hasattr(self, "_view"):
                self._view.release()
            try:
                self._umem.close()
            except BufferError:
                pass  # frames still referenced: unmapped when they go
            self._umem = None

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

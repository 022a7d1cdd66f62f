"""One AF_XDP socket: an interface queue, its UMEM and its four rings, set
up with plain syscalls (Documentation/networking/af_xdp.rst), the rings'
producer/consumer indices kept here (ring.py). Received frames come as a
:class:`Batch`; sending copies frames into free buffers, or sends a batch's
frames from the buffers they arrived in."""

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
from dataclasses import astuple, dataclass
from itertools import islice
from pathlib import Path

from .. import netlink
from ..dataplane import afxdp
from ..errors import UsageError, XdpRouterError
from ..router import default_object_path as router_object_path
from .batch import Batch
from .ring import (
    PGOFF_COMPLETION,
    PGOFF_FILL,
    PGOFF_RX,
    PGOFF_TX,
    SOL_XDP,
    XDP_COPY,
    XDP_MMAP_OFFSETS,
    XDP_OPTIONS,
    XDP_OPTIONS_ZEROCOPY,
    XDP_RX_RING,
    XDP_STATISTICS,
    XDP_TX_RING,
    XDP_UMEM_COMPLETION_RING,
    XDP_UMEM_FILL_RING,
    XDP_UMEM_REG,
    XDP_USE_NEED_WAKEUP,
    XDP_ZEROCOPY,
    Ring,
)

AF_XDP = afxdp.AF_XDP
MODES = ("auto", "copy", "zerocopy")
BIND_RETRY_SECONDS = 1.0


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
        return astuple(self)


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


class Socket:
    """An AF_XDP socket bound to ``iface``'s rx/tx queue ``queue``, with a
    UMEM of ``frames`` buffers of ``frame_size`` bytes: half of them wait in
    the fill ring for received frames, half are for sending (a frame sent in
    place takes its buffer from one half to the other; the fill ring is
    topped up from the free buffers).

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
        self._rings: list[Ring] = []
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
        self._rx = Ring(fd, off[0:4], half, 16, PGOFF_RX)
        self._tx = Ring(fd, off[4:8], half, 16, PGOFF_TX)
        self._fill = Ring(fd, off[8:12], half, 8, PGOFF_FILL)
        self._comp = Ring(fd, off[12:16], half, 8, PGOFF_COMPLETION)
        self._rings = [self._rx, self._tx, self._fill, self._comp]
        self._view = memoryview(self._umem)
        self._empty = Batch(None, self._view, array("Q"))
        self._held: Batch | None = None  # the last batch received, until its buffers go back
        # Buffers: the kernel's for receiving (fill and RX rings: ``_in_rx``,
        # kept at ``_rx_target`` when free buffers allow), a batch's, on the
        # TX ring (``_tx_out``), or free (``_free``: for ``send`` and for
        # topping the fill ring up after frames were sent in place).
        self._free: list[int] = [i * frame_size for i in range(frames)]
        self._rx_target, self._in_rx, self._tx_out = half, 0, 0
        self._post_fill(array("Q"))
        flags = XDP_USE_NEED_WAKEUP | {"auto": 0, "copy": XDP_COPY, "zerocopy": XDP_ZEROCOPY}[mode]
        # a socket closed on this queue just before lets go of it a moment
        # later (the kernel frees its buffer pool from a work queue): EBUSY
        # until then, so try again for a while
        deadline = time.monotonic() + BIND_RETRY_SECONDS
        while (err := afxdp.bind_xsk(fd, self.ifindex, self.queue, flags)) == errno.EBUSY:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
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

    def _post_fill(self, addrs: array[int]) -> None:
        """Hand ``addrs`` to the kernel for receiving (fill ring), topped up
        from the free buffers to ``_rx_target``."""
        need = self._rx_target - self._in_rx - len(addrs)
        free = self._free
        if need > 0 and free:
            take = free[-need:]
            del free[-need:]
            addrs = addrs + array("Q", take)
        n = self._fill.produce(addrs)
        self._in_rx += n
        if n and self._fill.need_wakeup():
            self._wakeup_rx()

    def _give_back(self, batch: Batch) -> None:
        """Return a batch's buffers to the kernel, but those sent in place."""
        if batch.released:
            return
        batch.released = True
        if not self._rings:  # closed
            return
        if self._held is batch:
            self._held = None
        self._post_fill(batch.kept())

    def _wakeup_rx(self) -> None:
        try:
            self._sock.recv(0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass

    def pending(self) -> int:
        """Frames waiting in the RX ring."""
        return self._rx.pending()

    def recv(self, max_frames: int = 64, timeout: float | None = 0) -> Batch:
        """Up to ``max_frames`` received frames, as a :class:`Batch`: their
        lengths and UMEM offsets as arrays, and a memoryview into the UMEM
        for each frame on access (no copy).

        Waits up to ``timeout`` seconds for the first (``None``: forever, 0:
        not at all). The frames are valid until the next ``recv`` on this
        socket, which gives the last batch's buffers back to the kernel (or
        until ``batch.release()``): copy (``bytes(frame)``) what must live
        longer.
        """
        held = self._held
        if held is not None:
            self._give_back(held)
        ring = self._rx
        if timeout != 0 and not ring.pending():
            select.select([self._sock], [], [], timeout)
        descs = ring.consume(max_frames)
        if not descs:
            return self._empty
        self._in_rx -= len(descs) >> 1
        batch = self._held = Batch(self, self._view, descs)
        return batch

    def _reap(self) -> None:
        """Take back the buffers the kernel has sent (completion ring)."""
        done = self._comp.consume(self._comp.size)
        if done:
            chunk = ~(self.frame_size - 1)
            self._free.extend([a & chunk for a in done])
            self._tx_out -= len(done)

    def _tx_room(self) -> int:
        self._reap()
        return self._tx.room()

    def send(self, frames: Iterable[bytes | bytearray | memoryview], *, kick: bool = True) -> int:
        """Send frames out of the socket's interface and queue; each is
        copied into a free UMEM buffer (frames of another socket's batch
        too: forwarding to another interface). Returns how many were queued
        (fewer than given when the TX ring or the free buffers run out).
        ``kick=False``: queued only, sent at the next :meth:`kick`."""
        free, size = self._free, self.frame_size
        todo = list(islice(frames, min(self._tx_room(), len(free))))
        if not todo:
            return 0
        lengths = array("Q", map(len, todo))
        lo, hi = min(lengths), max(lengths)
        if not 0 < lo <= hi <= size:
            raise UsageError(f"a frame of {hi if lo else 0} bytes: a {size}-byte UMEM buffer takes 1..{size}")
        addrs = array("Q", free[-len(todo) :])
        del free[-len(todo) :]
        view = self._view
        for addr, n, frame in zip(addrs, lengths, todo, strict=True):
            view[addr : addr + n] = frame
        descs = array("Q", bytes(16 * len(todo)))
        descs[0::2], descs[1::2] = addrs, lengths
        return self._post_tx(descs, kick)

    def send_in_place(self, batch: Batch, indices: Iterable[int] | None = None, *, kick: bool = True) -> int:
        """Send frames of ``batch`` (all, or those at ``indices``, in that
        order) out of this socket's interface and queue from the buffers
        they arrived in: no copy. Edit them in place first (``batch[i]`` is
        writable; ``batch.lengths[i]`` sets the length sent). Their buffers
        leave the batch, and come back to the socket when sent. Returns how
        many were queued: the first ones, fewer when the TX ring is full;
        the rest stay in the batch. ``kick=False`` as for :meth:`send`."""
        if batch.socket is not self:
            raise UsageError("a batch is sent in place only by the socket that received it (its UMEM)")
        if batch.released:
            raise UsageError("the batch was released: its buffers are the kernel's again")
        room = self._tx_room()
        if indices is None and len(batch) <= room and (whole := batch.take_all()) is not None:
            return self._post_tx(whole, kick)  # as the kernel gave them: valid
        offsets, lengths, mask, size = batch.offsets, batch.lengths, self.frame_size - 1, self.frame_size
        descs: array[int] = array("Q")
        try:
            for i in range(len(batch)) if indices is None else indices:
                if not room:
                    break
                addr, n = offsets[i], lengths[i]
                if not 0 < n <= size - (addr & mask):
                    raise UsageError(f"frame {i}: {n} bytes do not fit its UMEM buffer (1..{size - (addr & mask)})")
                if not batch.mark_sent(i):
                    raise UsageError(f"frame {i} of the batch was already sent in place")
                descs.append(addr)
                descs.append(n)
                room -= 1
        finally:  # those before a refused one leave all the same: their buffers are marked sent
            sent = self._post_tx(descs, kick)
        return sent

    def _post_tx(self, descs: array[int], kick: bool) -> int:
        n = self._tx.produce(descs)
        self._tx_out += n
        if n and kick:
            self.kick()
        return n

    def kick(self) -> None:
        """Make the kernel send what the TX ring holds. In copy mode the
        kernel sends in this call, at most 32 frames a time (TX_BATCH_SIZE;
        EAGAIN while more wait, or while the completion ring is full): so
        again until none waits."""
        for _ in range(self._tx.size // 32 + 2):
            if not self._tx.need_wakeup():
                return
            try:
                self._sock.send(b"", socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                self._reap()
            except InterruptedError:
                pass
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOBUFS, errno.ENETDOWN):
                    raise
                return

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait until every frame sent has left (its buffer is back); False
        on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            if not self._tx_out:
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

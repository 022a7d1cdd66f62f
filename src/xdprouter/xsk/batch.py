"""A batch of received frames: their descriptors, copied out of the RX ring
in one call, and views into the UMEM made only when asked for.

Reading a frame needs no object per frame: ``batch.lengths`` and
``batch.offsets`` are arrays (one per batch), and ``batch.umem`` is the
socket's whole UMEM, so ``batch.umem[batch.offsets[i] + 23]`` or
``struct.unpack_from("!H", batch.umem, batch.offsets[i] + 12)`` read frame
``i`` in place. Indexing and iteration give a memoryview of each frame, made
on access (about 130 ns each here).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    from .socket import Socket


class Batch(Sequence[memoryview]):
    """The frames of one :meth:`Socket.recv`, in the order received.

    The buffers stay the socket's until the next ``recv`` on it or
    :meth:`release`, whichever comes first; then they go back to the kernel
    (fill ring), except those sent in place (:meth:`Socket.send_in_place`),
    which come back when the kernel has sent them. Copy what must live
    longer (``bytes(batch[i])``).

    ``offsets`` and ``lengths`` belong to the batch (arrays of ``Q``, copied
    from the ring): editing ``lengths[i]`` before ``send_in_place`` sends
    that many bytes of frame ``i`` (up to the end of its buffer).
    """

    __slots__ = ("socket", "umem", "offsets", "lengths", "released", "descs", "_sent", "_count")

    def __init__(self, socket: Socket | None, umem: memoryview, descs: array[int]) -> None:
        self.socket = socket  # the socket that received the frames (None: the empty batch)
        self.umem = umem  # the socket's whole UMEM, writable
        # xdp_desc: addr, then len and options in one word; options stay 0
        # without XDP_USE_SG (never set here), so that word is the length
        self.offsets: array[int] = descs[0::2]  # where each frame starts in umem
        self.lengths: array[int] = descs[1::2]
        self.descs = descs  # as received: what the TX ring takes too
        self.released = False  # the buffers are no longer the batch's
        self._sent: bytearray | None = None  # 1 for each frame sent in place
        self._count = 0  # how many were

    def __len__(self) -> int:
        return len(self.offsets)

    def __bool__(self) -> bool:
        return len(self.offsets) > 0

    @overload
    def __getitem__(self, i: int) -> memoryview: ...

    @overload
    def __getitem__(self, i: slice) -> list[memoryview]: ...

    def __getitem__(self, i: int | slice) -> memoryview | list[memoryview]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self.offsets)))]
        start = self.offsets[i]
        return self.umem[start : start + self.lengths[i]]

    def __iter__(self) -> Iterator[memoryview]:
        umem = self.umem
        for a, n in zip(self.offsets, self.lengths, strict=True):
            yield umem[a : a + n]

    def sent(self, i: int) -> bool:
        """Whether frame ``i`` was sent in place (its buffer is the kernel's)."""
        return self._sent is not None and bool(self._sent[i])

    def kept(self) -> array[int]:
        """The offsets of the frames not sent in place."""
        if self._sent is None:
            return self.offsets
        if self._count == len(self.offsets):
            return array("Q")
        sent = self._sent
        return array("Q", [a for a, s in zip(self.offsets, sent, strict=True) if not s])

    def take_all(self) -> array[int] | None:
        """For sending the whole batch in place: its descriptors as received,
        every frame then marked as sent; None if some frame was sent already
        or a length was edited (then frame by frame)."""
        if self._sent is not None or self.lengths != self.descs[1::2]:
            return None
        self._sent = bytearray(b"\x01") * len(self.offsets)
        self._count = len(self.offsets)
        return self.descs

    def mark_sent(self, i: int) -> bool:
        """Mark frame ``i`` as sent in place; False if it already was."""
        if self._sent is None:
            self._sent = bytearray(len(self.offsets))
        if self._sent[i]:
            return False
        self._sent[i] = 1
        self._count += 1
        return True

    def release(self) -> None:
        """Give the buffers back to the kernel now (the next ``recv`` would);
        views of the frames must not be used afterwards."""
        if self.socket is not None:
            self.socket._give_back(self)
        self.released = True

    def __repr__(self) -> str:
        where = f"{self.socket.iface} queue {self.socket.queue}" if self.socket else "none"
        return f"<xsk.Batch of {len(self)} frames from {where}{', released' if self.released else ''}>"

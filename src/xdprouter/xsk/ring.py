"""The four rings of an AF_XDP socket, mmapped, and the constants of
linux/if_xdp.h they need. The ring index arithmetic relies on x86-64's
store and load ordering (the project's only target); on weaker memory
models it would need barriers."""

from __future__ import annotations

import mmap
from array import array

SOL_XDP = 283
# linux/if_xdp.h
XDP_MMAP_OFFSETS, XDP_RX_RING, XDP_TX_RING, XDP_UMEM_REG = 1, 2, 3, 4
XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_STATISTICS, XDP_OPTIONS = 5, 6, 7, 8
XDP_COPY, XDP_ZEROCOPY, XDP_USE_NEED_WAKEUP = 1 << 1, 1 << 2, 1 << 3
XDP_RING_NEED_WAKEUP = 1
XDP_OPTIONS_ZEROCOPY = 1
PGOFF_RX, PGOFF_TX, PGOFF_FILL, PGOFF_COMPLETION = 0, 0x80000000, 0x100000000, 0x180000000


class Ring:
    """One of the four rings, mmapped: producer and consumer indices, flags,
    and descriptors (16-byte xdp_desc for RX/TX, 8-byte addresses for the
    fill and completion rings), viewed as native integers (``desc``) and as
    bytes (``raw``, for copying many at once)."""

    def __init__(self, fd: int, offsets: tuple[int, int, int, int], size: int, desc_size: int, pgoff: int) -> None:
        producer, consumer, desc, flags = offsets
        length = desc + size * desc_size
        self.map = mmap.mmap(fd, length, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), offset=pgoff)
        view = memoryview(self.map)
        self.words = view.cast("I")  # producer, consumer and flags, by word index
        self.prod, self.cons, self.flags = producer // 4, consumer // 4, flags // 4
        self.raw = view[desc:length]
        self.desc = self.raw.cast("Q")
        self.mask = size - 1
        self.size = size
        self.desc_words = desc_size // 8  # 64-bit words per descriptor

    def need_wakeup(self) -> bool:
        return bool(self.words[self.flags] & XDP_RING_NEED_WAKEUP)

    def room(self) -> int:
        """Free entries, for a ring user space produces (fill, TX)."""
        words = self.words
        return self.size - ((words[self.prod] - words[self.cons]) & 0xFFFFFFFF)

    def produce(self, words: array[int]) -> int:
        """Append descriptors (``desc_words`` 64-bit words each) and publish
        them; the caller checked the room. Returns how many."""
        n = len(words) // self.desc_words
        if not n:
            return 0
        prod = self.words[self.prod]
        start = (prod & self.mask) * self.desc_words
        end = start + len(words)
        if end <= len(self.desc):
            self.desc[start:end] = words
        else:  # wraps round
            first = len(self.desc) - start
            self.desc[start:] = words[:first]
            self.desc[: len(words) - first] = words[first:]
        self.words[self.prod] = (prod + n) & 0xFFFFFFFF
        return n

    def consume(self, limit: int) -> array[int]:
        """Up to ``limit`` descriptors waiting (a ring the kernel produces:
        RX, completion), copied out in one or two calls, and the ring's
        consumer index moved past them."""
        words = self.words
        cons = words[self.cons]
        n = (words[self.prod] - cons) & 0xFFFFFFFF
        out: array[int] = array("Q")
        if not n:
            return out
        if n > limit:
            n = limit
        size = 8 * self.desc_words
        start = (cons & self.mask) * size
        end = start + n * size
        if end <= len(self.raw):
            out.frombytes(self.raw[start:end])
        else:
            out.frombytes(self.raw[start:])
            out.frombytes(self.raw[: end - len(self.raw)])
        words[self.cons] = (cons + n) & 0xFFFFFFFF
        return out

    def pending(self) -> int:
        """Entries waiting, for a ring the kernel produces."""
        words = self.words
        return (words[self.prod] - words[self.cons]) & 0xFFFFFFFF

    def close(self) -> None:
        self.desc.release()
        self.raw.release()
        self.words.release()
        self.map.close()

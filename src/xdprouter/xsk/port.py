"""Getting frames to AF_XDP sockets: ``Redirector`` attaches the minimal XDP
program (``bpf/xsk_redirect.bpf.c``) and fills its XSKMAP (rx queue ->
socket); ``Port`` is a redirector and a socket on every queue of an
interface (the rx queue a frame lands on depends on the sender, on a veth
its CPU)."""

from __future__ import annotations

import os
import select
import struct
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

from .. import netlink
from ..dataplane import bpf, xdp
from ..dataplane.syscalls import setns_net
from ..errors import UsageError, XdpRouterError
from .batch import Batch
from .reinject import Reinjector
from .socket import Socket, Statistics, default_object_path, queue_count


class _Netns:
    """The network namespace of the caller at creation; ``with`` it enters
    it for the block when the caller has moved to another one since."""

    def __init__(self) -> None:
        self.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self._back: int | None = None

    def __enter__(self) -> None:
        if os.fstat(self.fd).st_ino == os.stat("/proc/thread-self/ns/net").st_ino:
            return
        self._back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        setns_net(self.fd, "the redirector's namespace")

    def __exit__(self, *exc: object) -> None:
        if self._back is not None:
            setns_net(self._back, "home")
            os.close(self._back)
            self._back = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Redirector:
    """``xsk_redirect`` attached to ``iface``: each frame goes to the socket
    registered for its rx queue, or to the kernel when there is none.

    Refuses an interface that already has an XDP program (xdprouter's
    included: steering rules, not this program, will hand its frames over).
    """

    def __init__(self, iface: str, mode: str = "native", object_path: str | os.PathLike[str] | None = None) -> None:
        (link,) = netlink.resolve([iface])
        self.iface, self.ifindex, self.mode = iface, link.index, mode
        state = xdp.query(link.index)
        if state.prog_id:
            raise UsageError(f"{iface} already has an XDP program (id {state.prog_id}, {state.mode}): detach it first")
        self._home = _Netns()
        path = Path(object_path or default_object_path())
        if not path.exists():
            raise UsageError(f"{path} missing: run `make bpf`")
        self._obj: bpf.Object | None = bpf.Object(str(path))
        self._map = self._obj.map("xsk_sockets")
        self._attached = False
        try:
            xdp.attach(link.index, self._obj.program("xsk_redirect").fd, mode)
            self._attached = True
        except BaseException:
            self.close()
            raise

    def add(self, sock: Socket) -> None:
        """Send ``sock``'s queue's frames to ``sock``."""
        if sock.ifindex != self.ifindex:
            raise UsageError(f"the socket is bound to {sock.iface}, not to {self.iface} where this program is attached")
        self._map.update(sock.queue, struct.pack("I", sock.fileno()))

    def remove(self, queue: int) -> None:
        self._map.delete(queue)

    def close(self) -> None:
        if self._attached:
            self._attached = False
            try:
                with self._home:
                    xdp.detach(self.ifindex, self.mode)
            except (XdpRouterError, OSError):
                pass  # the interface or its namespace went away: so did the attachment
        if hasattr(self, "_home"):
            self._home.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Redirector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Port:
    """Every queue of ``iface`` to Python: a :class:`Redirector` and one
    :class:`Socket` per queue (or only ``queues``).

    >>> with Port("eth0") as port:                       # doctest: +SKIP
    ...     for frame in port.recv(timeout=1.0):
    ...         print(len(frame))
    """

    def __init__(
        self,
        iface: str,
        queues: Iterable[int] | None = None,
        *,
        mode: str = "auto",
        xdp_mode: str = "native",
        frames: int = 4096,
        ring_size: int = 2048,
    ) -> None:
        wanted = list(range(queue_count(iface))) if queues is None else list(queues)
        self.iface, self.xdp_mode = iface, xdp_mode
        self.sockets: list[Socket] = []
        self.redirector: Redirector | None = None
        self.reinjector: Reinjector | None = None  # to_kernel's, once used
        self._home = _Netns()
        try:
            for q in wanted:
                self.sockets.append(Socket(iface, q, mode=mode, frames=frames, ring_size=ring_size))
            self.redirector = Redirector(iface, xdp_mode)
            for s in self.sockets:
                self.redirector.add(s)
        except BaseException:
            self.close()
            raise
        self.last = self.sockets[0] if self.sockets else None  # the socket of the last batch received
        self._poll = select.poll()
        for s in self.sockets:
            self._poll.register(s.fileno(), select.POLLIN)
        self._next = 0
        self._empty = Batch(None, memoryview(b""), array("Q"))

    def recv(self, max_frames: int = 64, timeout: float | None = 0) -> Batch:
        """Frames from the queues in turn: the first that has any, up to
        ``max_frames``; with ``timeout``, waits for one as :meth:`Socket.recv`.
        ``batch.socket`` (also ``last``) is the socket they came from."""
        socks, batch = self.sockets, self._empty
        for _ in range(2):
            for k in range(len(socks)):
                s = socks[(self._next + k) % len(socks)]
                batch = s.recv(max_frames)
                if batch:
                    self._next = (self._next + k + 1) % len(socks)
                    self.last = s
                    return batch
            if timeout == 0:
                break
            self._poll.poll(None if timeout is None else int(timeout * 1000))
        return batch

    def frames(self, timeout: float | None = None) -> Iterator[tuple[Socket, memoryview]]:
        """Each received frame with the socket it came from (answer on that
        socket to leave by the same interface)."""
        while True:
            batch = self.recv(timeout=timeout)
            sock = batch.socket
            if sock is None:  # none in time
                if timeout is not None:
                    return
                continue
            for frame in batch:
                yield sock, frame

    def to_kernel(self, frames: Iterable[bytes | bytearray | memoryview]) -> int:
        """Give ``frames`` to the kernel as if received on the interface
        (a :class:`Reinjector`, made on first use); returns how many."""
        if self.reinjector is None:
            if self.xdp_mode != "native":
                raise UsageError(
                    f"frames go back to the kernel only past a native-mode redirector, not {self.xdp_mode}"
                )
            with self._home:
                self.reinjector = Reinjector(self.iface)
        return self.reinjector.send(frames)

    def stats(self) -> Statistics:
        total = Statistics(0, 0, 0, 0, 0, 0)
        for s in self.sockets:
            total = total + s.stats()
        return total

    def close(self) -> None:
        if self.reinjector is not None:
            self.reinjector.close()
            self.reinjector = None
        if self.redirector is not None:
            self.redirector.close()
            self.redirector = None
        for s in self.sockets:
            s.close()
        self.sockets = []
        self._home.close()

    def __enter__(self) -> Port:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Giving frames back to the kernel: ``Reinjector`` makes a frame taken by
an AF_XDP socket arrive again on its interface, this time for the kernel's
stack (ARP, local delivery, forwarding by Linux, sockets, tcpdump).

No system call receives a frame "as if from interface X", and an XDP
program can only send frames out. So: a TAP device of our own (the frame
written to its file descriptor is a frame the TAP receives), and on the
TAP's TC ingress hook ``bpf/xsk_reinject.bpf.c``, which redirects every
frame to the ingress of X (``bpf_redirect(X, BPF_F_INGRESS)``). The kernel
then receives it on X through ``netif_rx()``: after XDP, so a redirector
attached to X in native mode does not take it again (one in generic mode
would: generic XDP runs on that path too). The TAP exists while the
Reinjector is open: closing its file descriptor removes it with its hook.
One ``write()`` and one skb per frame.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

from .. import netlink
from ..dataplane import bpf, tc, xdp
from ..errors import UsageError
from ..router import default_object_path as router_object_path
from .socket import XskError

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def default_object_path() -> Path:
    """Beside the router's object (build/, or where XDPROUTER_BPF_OBJECT points)."""
    return router_object_path().parent / "xsk_reinject.bpf.o"


class Reinjector:
    """Frames given to :meth:`send` arrive on ``iface`` for the kernel, as
    if received there. Create it in the interface's namespace."""

    def __init__(self, iface: str, object_path: str | os.PathLike[str] | None = None) -> None:
        (link,) = netlink.resolve([iface])
        self.iface, self.ifindex = iface, link.index
        self.tap = f"xskk{link.index}"  # the TAP's name, while open
        if xdp.query(link.index).mode == "generic":
            raise UsageError(
                f"{iface}'s XDP program runs in generic mode, which would take the frames given back again"
            )
        path = Path(object_path or default_object_path())
        if not path.exists():
            raise UsageError(f"{path} missing: run `make bpf`")
        self._fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        self._obj: bpf.Object | None = None
        try:
            try:
                fcntl.ioctl(self._fd, TUNSETIFF, struct.pack("16sH", self.tap.encode(), IFF_TAP | IFF_NO_PI))
            except OSError as e:
                raise XskError(f"creating TAP {self.tap} to give {iface}'s frames back: {e.strerror}") from None
            tap_index = socket.if_nametoindex(self.tap)
            # no IPv6 of its own: nothing of the TAP's goes anywhere
            with open(f"/proc/sys/net/ipv6/conf/{self.tap}/disable_ipv6", "w") as f:
                f.write("1")
            self._obj = bpf.Object(str(path))
            self._obj.map("reinject_target").update(0, self.ifindex)
            tc.attach_ingress(tap_index, self._obj.program("xsk_reinject").fd)
            netlink.set_up(tap_index)
        except BaseException:
            self.close()
            raise

    def send(self, frames: Iterable[bytes | bytearray | memoryview]) -> int:
        """Give ``frames`` to the kernel on the interface (each copied into
        an skb). Returns how many."""
        write, fd, n = os.write, self._fd, 0
        for frame in frames:
            write(fd, frame)
            n += 1
        return n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Reinjector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

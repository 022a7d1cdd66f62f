"""The libc pieces of AF_XDP that Python's socket module lacks (Python 3.11):
bind() with a sockaddr_xdp, and the address of a UMEM to register. Here so
that ctypes stays in dataplane/ (xdprouter.xsk uses them)."""

from __future__ import annotations

import ctypes
import mmap

from ._libbpf import libc

AF_XDP = 44


class _SockaddrXdp(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("ifindex", ctypes.c_uint32),
        ("queue_id", ctypes.c_uint32),
        ("shared_umem_fd", ctypes.c_uint32),
    ]


libc.bind.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
libc.bind.restype = ctypes.c_int


def bind_xsk(fd: int, ifindex: int, queue: int, flags: int) -> int:
    """bind() an AF_XDP socket to an interface queue: 0, or the errno."""
    sa = _SockaddrXdp(AF_XDP, flags, ifindex, queue, 0)
    if libc.bind(fd, ctypes.byref(sa), ctypes.sizeof(sa)) != 0:
        return ctypes.get_errno()
    return 0


def buffer_address(area: mmap.mmap) -> int:
    """The address of an mmap'ed area (valid while it stays mapped)."""
    anchor = ctypes.c_char.from_buffer(area)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor

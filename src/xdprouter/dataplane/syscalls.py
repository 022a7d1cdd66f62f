"""The libc calls the lab needs that Python's os and socket modules lack
(Python 3.11): setns() and sendmmsg(). Here so that ctypes stays in dataplane/."""

from __future__ import annotations

import ctypes

from ._libbpf import libc

CLONE_NEWNET = 0x40000000


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.setns.restype = ctypes.c_int
libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int]
libc.sendmmsg.restype = ctypes.c_int


def setns_net(fd: int, what: str) -> None:
    """Move the calling thread into the network namespace open at ``fd``."""
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns into {what}")


class Copies:
    """``batch`` messages that all carry ``frame``, for sending with sendmmsg()."""

    def __init__(self, frame: bytes, batch: int) -> None:
        self._buf = ctypes.create_string_buffer(frame, len(frame))
        self._iovs = (_Iovec * batch)(*[_Iovec(ctypes.addressof(self._buf), len(frame)) for _ in range(batch)])
        self._msgs = (_Mmsghdr * batch)(
            *[_Mmsghdr(_Msghdr(None, 0, ctypes.pointer(self._iovs[i]), 1, None, 0, 0), 0) for i in range(batch)]
        )
        self.batch = batch

    def send(self, fd: int, count: int) -> int:
        """sendmmsg() of up to ``count`` of the copies: how many were sent."""
        n = libc.sendmmsg(fd, self._msgs, min(self.batch, count), 0)
        if n <= 0:
            raise OSError(ctypes.get_errno(), "sendmmsg")
        return int(n)

"""A perf buffer (libbpf's perf_buffer__*) over a BPF_MAP_TYPE_PERF_EVENT_ARRAY:
each record handed to a Python callable as bytes."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable

from ..errors import BpfError
from . import _libbpf as L
from .bpf import Map


class PerfBuffer:
    """``on_sample(bytes)`` for every record, ``on_lost(count)`` for records
    the kernel could not write (the buffer was full); ``pages`` per CPU."""

    def __init__(
        self, events: Map, on_sample: Callable[[bytes], None], on_lost: Callable[[int], None], pages: int = 64
    ) -> None:
        def sample(_ctx: int, _cpu: int, data: int, size: int) -> None:
            on_sample(ctypes.string_at(data, size))

        def lost(_ctx: int, _cpu: int, count: int) -> None:
            on_lost(count)

        self._callbacks = (L.PERF_SAMPLE_FN(sample), L.PERF_LOST_FN(lost))  # alive as long as the buffer
        pb = L.lib.perf_buffer__new(
            events.fd,
            pages,
            ctypes.cast(self._callbacks[0], ctypes.c_void_p),
            ctypes.cast(self._callbacks[1], ctypes.c_void_p),
            None,
            None,
        )
        if not pb or L.lib.libbpf_get_error(pb):
            raise BpfError("opening a perf buffer", ctypes.get_errno() or errno.ENOMEM)
        self._pb: int | None = pb

    def poll(self, timeout_ms: int) -> None:
        """Hand over what arrived, waiting up to ``timeout_ms`` for something."""
        rc = L.lib.perf_buffer__poll(self._pb, timeout_ms)
        if rc < 0 and -rc != errno.EINTR:  # a signal: the caller decides
            raise BpfError("reading a perf buffer", -rc)

    def close(self) -> None:
        if self._pb:
            L.lib.perf_buffer__free(self._pb)
            self._pb = None

"""BPF objects, programs and maps, through the system libbpf.

A thin, typed layer over ``_libbpf``: open and load an object file, find its
programs and maps, read and write maps (per-CPU ones included), attach XDP,
and run a program on a packet with BPF_PROG_RUN.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import BpfError
from . import _libbpf as L

S = TypeVar("S", bound=ctypes.Structure)
if TYPE_CHECKING:
    Key = int | ctypes._CData  # an int is a __u32 key
    Value = int | bytes | ctypes._CData  # an int is a __u32 value

_log: list[str] = []


_print_buf = ctypes.create_string_buffer(1 << 20)  # a verifier log comes in one call: room for its end


@L.LIBBPF_PRINT_FN
def _print(level: int, fmt: bytes, args: int) -> int:
    L.libc.vsnprintf(_print_buf, len(_print_buf), fmt, args)
    _log.append(_print_buf.value.decode(errors="replace"))
    return 0


L.lib.libbpf_set_print(ctypes.cast(_print, ctypes.c_void_p))


ENOTSUPP = 524  # the kernel's own "not supported" (include/linux/errno.h), not in userspace's errno
TEST_RUN_REFUSED = (
    "this kernel refuses to run XDP programs on test frames: what needs it here (the benchmark's per-path costs, "
    "Router.test_run, the IPv6 local-table probe, which then falls back to full lookups) is unavailable"
)


def _check(rc: int, what: str) -> int:
    """libbpf returns -errno (and sets errno) on failure."""
    if rc < 0:
        err = -rc if rc != -1 else ctypes.get_errno()
        raise BpfError(what, err)
    return rc


def possible_cpus() -> int:
    return _check(L.lib.libbpf_num_possible_cpus(), "counting possible CPUs")


def per_cpu_stride(value_size: int) -> int:
    """The room one CPU's value takes in a per-CPU map's buffer: 8-byte aligned."""
    return (value_size + 7) // 8 * 8


def membarrier() -> None:
    """Wait for an RCU grace period: every XDP run that began before has ended."""
    if L.libc.syscall(L.SYS_MEMBARRIER, L.MEMBARRIER_CMD_GLOBAL, 0, 0) != 0:
        time.sleep(0.05)  # no membarrier: a frame's run takes microseconds


def _key(key: Key) -> ctypes._CData:
    return ctypes.c_uint32(key) if isinstance(key, int) else key


def _value(value: Value) -> bytes:
    if isinstance(value, int):
        return bytes(ctypes.c_uint32(value))
    return value if isinstance(value, bytes) else bytes(value)  # type: ignore[arg-type]


@dataclass
class TestRun:
    """The outcome of one BPF_PROG_RUN."""

    retval: int
    data: bytes
    duration_ns: int


class Program:
    """A loaded program, by file descriptor (owned or borrowed)."""

    def __init__(self, fd: int, owned: bool = False) -> None:
        self.fd = fd
        self._owned = owned

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        fd = L.lib.bpf_prog_get_fd_by_id(prog_id)
        _check(fd, f"opening BPF program id {prog_id}")
        return cls(fd, owned=True)

    def info(self) -> L.BpfProgInfo:
        info = L.BpfProgInfo()
        size = L.c_u32(ctypes.sizeof(info))
        _check(L.lib.bpf_obj_get_info_by_fd(self.fd, ctypes.byref(info), ctypes.byref(size)), "reading program info")
        return info

    def map_ids(self) -> list[int]:
        count = self.info().nr_map_ids
        ids = (L.c_u32 * count)()
        info = L.BpfProgInfo(nr_map_ids=count, map_ids=ctypes.addressof(ids))
        size = L.c_u32(ctypes.sizeof(info))
        _check(L.lib.bpf_obj_get_info_by_fd(self.fd, ctypes.byref(info), ctypes.byref(size)), "reading program maps")
        return list(ids[: info.nr_map_ids])

    def test_run(
        self,
        packet: bytes,
        *,
        ingress_ifindex: int = 0,
        repeat: int = 1,
    ) -> TestRun:
        """Run the program on ``packet`` (BPF_PROG_RUN) in the caller's netns."""
        data_in = ctypes.create_string_buffer(packet, len(packet))
        out_size = max(len(packet) + 512, 4096)
        data_out = ctypes.create_string_buffer(out_size)
        ctx = L.XdpMd(data=0, data_end=len(packet), ingress_ifindex=ingress_ifindex)
        opts = L.BpfTestRunOpts(
            sz=ctypes.sizeof(L.BpfTestRunOpts),
            data_in=ctypes.cast(data_in, ctypes.c_void_p),
            data_size_in=len(packet),
            ctx_in=ctypes.cast(ctypes.byref(ctx), ctypes.c_void_p),
            ctx_size_in=ctypes.sizeof(ctx),
            repeat=repeat,
            data_out=ctypes.cast(data_out, ctypes.c_void_p),
            data_size_out=out_size,
        )
        rc = L.lib.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts))
        if rc < 0:
            err = -rc if rc != -1 else ctypes.get_errno()
            if err in (errno.EPERM, errno.EACCES, errno.EOPNOTSUPP, ENOTSUPP):
                raise BpfError("BPF_PROG_RUN", err, meaning=TEST_RUN_REFUSED)
            raise BpfError("BPF_PROG_RUN", err)
        return TestRun(opts.retval, data_out.raw[: opts.data_size_out], opts.duration)

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Map:
    """A map by file descriptor; keys and values are ctypes objects or bytes."""

    def __init__(self, fd: int, info: L.BpfMapInfo, owned: bool = False) -> None:
        self.fd = fd
        self.info = info
        self._owned = owned

    @classmethod
    def from_fd(cls, fd: int, owned: bool = False) -> Map:
        info = L.BpfMapInfo()
        size = L.c_u32(ctypes.sizeof(info))
        _check(L.lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "reading map info")
        return cls(fd, info, owned)

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        fd = L.lib.bpf_map_get_fd_by_id(map_id)
        _check(fd, f"opening BPF map id {map_id}")
        return cls.from_fd(fd, owned=True)

    @property
    def name(self) -> str:
        return self.info.name.decode()

    @property
    def per_cpu(self) -> bool:
        return self.info.type in L.PER_CPU_MAP_TYPES

    def _value_size(self) -> int:
        """A value's size in a lookup's buffer: every CPU's, for a per-CPU map."""
        if self.per_cpu:
            return per_cpu_stride(self.info.value_size) * possible_cpus()
        return self.info.value_size

    def lookup(self, key: Key) -> bytes | None:
        """The raw value (all CPUs' values, 8-byte aligned, for per-CPU maps)."""
        value = ctypes.create_string_buffer(self._value_size())
        rc = L.lib.bpf_map_lookup_elem(self.fd, ctypes.byref(_key(key)), value)
        if rc < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return None
            raise BpfError(f"looking up in map {self.name}", err)
        return value.raw

    def lookup_as(self, key: Key, value_type: type[S]) -> S | None:
        """The value as a ``value_type`` (an abi struct), or None."""
        raw = self.lookup(key)
        return value_type.from_buffer_copy(raw) if raw is not None else None

    def lookup_per_cpu(self, key: Key, value_type: type[S]) -> list[S]:
        raw = self.lookup(key)
        if raw is None:
            return []
        stride = per_cpu_stride(ctypes.sizeof(value_type))
        return [value_type.from_buffer_copy(raw, i * stride) for i in range(len(raw) // stride)]

    def update(self, key: Key, value: Value, flags: int = L.BPF_ANY) -> None:
        buf = _value(value)
        _check(L.lib.bpf_map_update_elem(self.fd, ctypes.byref(_key(key)), buf, flags), f"updating map {self.name}")

    def zero(self, key: Key) -> None:
        """Write an all-zero value (on every CPU, for a per-CPU map)."""
        self.update(key, bytes(self._value_size()))

    def values(self) -> list[bytes]:
        """Every raw value of an array map, slot by slot, read with
        BPF_MAP_LOOKUP_BATCH (a few calls, where a lookup each would be
        thousands)."""
        n, vsize = self.info.max_entries, self._value_size()
        keys = ctypes.create_string_buffer(4 * n)
        vals = ctypes.create_string_buffer(vsize * n)
        token, done = L.c_u32(), 0
        while done < n:
            count = L.c_u32(n - done)
            opts = L.BpfMapBatchOpts(sz=ctypes.sizeof(L.BpfMapBatchOpts))
            rc = L.lib.bpf_map_lookup_batch(
                self.fd,
                ctypes.byref(token) if done else None,
                ctypes.byref(token),
                ctypes.byref(keys, 4 * done),
                ctypes.byref(vals, vsize * done),
                ctypes.byref(count),
                ctypes.byref(opts),
            )
            done += count.value
            if rc < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:  # the last batch
                    break
                raise BpfError(f"batch lookup in map {self.name}", err)
        raw = vals.raw
        return [raw[i * vsize : (i + 1) * vsize] for i in range(done)]

    def write_changed(self, values: list[bytes]) -> None:
        """Make an array map hold ``values`` (slot i = values[i]), writing only
        the slots that differ, so a reader never sees an unchanged slot move."""
        for slot, (old, value) in enumerate(zip(self.values(), values, strict=False)):
            if old != value:
                self.update(slot, value)

    def delete(self, key: Key) -> bool:
        rc = L.lib.bpf_map_delete_elem(self.fd, ctypes.byref(_key(key)))
        if rc < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return False
            raise BpfError(f"deleting from map {self.name}", err)
        return True

    def update_batch(self, keys: bytes, values: bytes, count: int) -> None:
        """BPF_MAP_UPDATE_BATCH: ``count`` packed keys and values in one call
        (the kernel may take fewer per call; the rest is sent again)."""
        if count == 0:
            return
        ksize, vsize = self.info.key_size, self.info.value_size
        if self.per_cpu:
            raise BpfError(f"batch update of per-CPU map {self.name} is not supported", errno.EINVAL)
        kbuf = ctypes.create_string_buffer(keys, len(keys))
        vbuf = ctypes.create_string_buffer(values, len(values))
        done = 0
        while done < count:
            n = L.c_u32(count - done)
            opts = L.BpfMapBatchOpts(sz=ctypes.sizeof(L.BpfMapBatchOpts))
            rc = L.lib.bpf_map_update_batch(
                self.fd,
                ctypes.byref(kbuf, done * ksize),
                ctypes.byref(vbuf, done * vsize),
                ctypes.byref(n),
                ctypes.byref(opts),
            )
            if rc < 0:
                raise BpfError(f"batch update of map {self.name}", ctypes.get_errno())
            done += n.value

    def delete_batch(self, keys: bytes, count: int) -> int:
        """BPF_MAP_DELETE_BATCH: delete ``count`` packed keys, every one of
        which must exist; returns how many went."""
        kbuf = ctypes.create_string_buffer(keys, len(keys))
        done = 0
        while done < count:
            n = L.c_u32(count - done)
            opts = L.BpfMapBatchOpts(sz=ctypes.sizeof(L.BpfMapBatchOpts))
            rc = L.lib.bpf_map_delete_batch(
                self.fd, ctypes.byref(kbuf, done * self.info.key_size), ctypes.byref(n), ctypes.byref(opts)
            )
            done += n.value
            if rc < 0:
                raise BpfError(f"batch delete in map {self.name}", ctypes.get_errno())
            if n.value == 0:
                break
        return done

    def raw_keys(self, key_size: int | None = None) -> Iterator[bytes]:
        """Every key, as bytes."""
        size = key_size or self.info.key_size
        prev: ctypes.Array[ctypes.c_char] | None = None
        while True:
            nxt = ctypes.create_string_buffer(size)
            rc = L.lib.bpf_map_get_next_key(self.fd, prev, nxt)
            if rc < 0:
                return
            yield nxt.raw
            prev = nxt

    def keys(self, key_type: type[ctypes._SimpleCData] = ctypes.c_uint32) -> Iterator[int]:
        prev: ctypes._CData | None = None
        while True:
            nxt = key_type()
            rc = L.lib.bpf_map_get_next_key(
                self.fd, ctypes.byref(prev) if prev is not None else None, ctypes.byref(nxt)
            )
            if rc < 0:
                return
            yield nxt.value
            prev = nxt

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Object:
    """A BPF object file opened and loaded by libbpf (bpf_object__*)."""

    def __init__(self, path: str, frags: bool = False) -> None:
        """``frags``: load every program as multi-buffer XDP
        (BPF_F_XDP_HAS_FRAGS, what ``SEC("xdp.frags")`` asks of libbpf,
        decided here at load so a kernel without it gets the same program
        single-buffer)."""
        _log.clear()
        obj = L.lib.bpf_object__open_file(path.encode(), None)
        if not obj or L.lib.libbpf_get_error(obj):
            raise BpfError(f"opening {path}", ctypes.get_errno() or errno.ENOENT)
        self._obj: int | None = obj
        prog = L.lib.bpf_object__next_program(obj, None)
        while frags and prog:
            L.lib.bpf_program__set_flags(prog, L.lib.bpf_program__flags(prog) | L.BPF_F_XDP_HAS_FRAGS)
            prog = L.lib.bpf_object__next_program(obj, prog)
        rc = L.lib.bpf_object__load(obj)
        if rc < 0:
            log = "".join(_log)
            self.close()
            raise BpfError(f"loading {os.path.basename(path)}", -rc, log)

    def program(self, name: str) -> Program:
        prog = L.lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise BpfError(f"no program {name!r} in object", errno.ENOENT)
        return Program(L.lib.bpf_program__fd(prog))

    def map(self, name: str) -> Map:
        m = L.lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise BpfError(f"no map {name!r} in object", errno.ENOENT)
        return Map.from_fd(L.lib.bpf_map__fd(m))

    def close(self) -> None:
        if self._obj:
            L.lib.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def opened_program(prog_id: int) -> Iterator[Program]:
    prog = Program.from_id(prog_id)
    try:
        yield prog
    finally:
        prog.close()

"""Maps the control plane creates on its own (a firewall set's maps, swapped
into the program's maps of maps), and arrays mapped into memory."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
from collections.abc import Iterator

from ..errors import BpfError
from . import _libbpf as L
from .bpf import Map, _check


def _create(kind: int, name: str, key_size: int, value_size: int, max_entries: int, flags: int) -> Map:
    opts = L.BpfMapCreateOpts(sz=ctypes.sizeof(L.BpfMapCreateOpts), map_flags=flags)
    fd = L.lib.bpf_map_create(kind, name.encode(), key_size, value_size, max_entries, opts)
    _check(fd, f"creating map {name}")
    return Map.from_fd(fd, owned=True)


def create_lpm_trie(name: str, key_size: int, value_size: int, max_entries: int) -> Map:
    """A new LPM trie (no preallocation), owned by the caller."""
    return _create(L.BPF_MAP_TYPE_LPM_TRIE, name, key_size, value_size, max_entries, L.BPF_F_NO_PREALLOC)


def create_hash(name: str, key_size: int, value_size: int, max_entries: int) -> Map:
    """A new hash map (its entries preallocated), owned by the caller."""
    return _create(L.BPF_MAP_TYPE_HASH, name, key_size, value_size, max_entries, 0)


def create_mmapable_array(name: str, value_size: int, max_entries: int) -> Map:
    """A new array the caller can map (``mapped()``), owned by the caller."""
    return _create(L.BPF_MAP_TYPE_ARRAY, name, 4, value_size, max_entries, L.BPF_F_MMAPABLE)


@contextlib.contextmanager
def mapped(m: Map) -> Iterator[mmap.mmap]:
    """The values of an array created with BPF_F_MMAPABLE, as shared memory:
    writes are seen by the program at once."""
    size = m.info.value_size * m.info.max_entries
    size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
    try:
        mm = mmap.mmap(m.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as e:
        raise BpfError(f"mapping map {m.name}", e.errno or 0) from None
    try:
        yield mm
    finally:
        mm.close()

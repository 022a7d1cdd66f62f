"""ctypes declarations of the system libbpf (libbpf.so.1) and the two libc calls beside it: nothing else.

Every function the project calls is declared here once, with its argument
and return types; errno is captured (``use_errno=True``) so errors carry it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

c_int = ctypes.c_int
c_uint = ctypes.c_uint32
c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_size_t = ctypes.c_size_t
c_u8 = ctypes.c_uint8
c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4

XDP_ATTACHED_NONE = 0
XDP_ATTACHED_DRV = 1
XDP_ATTACHED_SKB = 2
XDP_ATTACHED_HW = 3
XDP_ATTACHED_MULTI = 4

BPF_ANY = 0


class BpfTestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_u32),
        ("data_size_out", c_u32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_u32),
        ("ctx_size_out", c_u32),
        ("retval", c_u32),
        ("repeat", c_int),
        ("duration", c_u32),
        ("flags", c_u32),
        ("cpu", c_u32),
        ("batch_size", c_u32),
    ]


class XdpMd(ctypes.Structure):
    """struct xdp_md, the context BPF_PROG_RUN takes for XDP."""

    _fields_ = [
        ("data", c_u32),
        ("data_end", c_u32),
        ("data_meta", c_u32),
        ("ingress_ifindex", c_u32),
        ("rx_queue_index", c_u32),
        ("egress_ifindex", c_u32),
    ]


class BpfXdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("old_prog_fd", c_int), ("_pad", c_int)]


class BpfXdpQueryOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_id", c_u32),
        ("drv_prog_id", c_u32),
        ("hw_prog_id", c_u32),
        ("skb_prog_id", c_u32),
        ("attach_mode", c_u8),
        ("_pad", c_u8 * 7),
    ]


class BpfProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", c_u32),
        ("id", c_u32),
        ("tag", c_u8 * 8),
        ("jited_prog_len", c_u32),
        ("xlated_prog_len", c_u32),
        ("jited_prog_insns", c_u64),
        ("xlated_prog_insns", c_u64),
        ("load_time", c_u64),
        ("created_by_uid", c_u32),
        ("nr_map_ids", c_u32),
        ("map_ids", c_u64),
        ("name", ctypes.c_char * 16),
        ("ifindex", c_u32),
        ("gpl_compatible", c_u32),
        ("netns_dev", c_u64),
        ("netns_ino", c_u64),
        ("nr_jited_ksyms", c_u32),
        ("nr_jited_func_lens", c_u32),
        ("jited_ksyms", c_u64),
        ("jited_func_lens", c_u64),
        ("btf_id", c_u32),
        ("func_info_rec_size", c_u32),
        ("func_info", c_u64),
        ("nr_func_info", c_u32),
        ("nr_line_info", c_u32),
        ("line_info", c_u64),
        ("jited_line_info", c_u64),
        ("nr_jited_line_info", c_u32),
        ("line_info_rec_size", c_u32),
        ("jited_line_info_rec_size", c_u32),
        ("nr_prog_tags", c_u32),
        ("prog_tags", c_u64),
        ("run_time_ns", c_u64),
        ("run_cnt", c_u64),
        ("recursion_misses", c_u64),
        ("verified_insns", c_u32),
        ("attach_btf_obj_id", c_u32),
        ("attach_btf_id", c_u32),
        ("_pad", c_u32),
    ]


class BpfMapInfo(ctypes.Structure):
    _fields_ = [
        ("type", c_u32),
        ("id", c_u32),
        ("key_size", c_u32),
        ("value_size", c_u32),
        ("max_entries", c_u32),
        ("map_flags", c_u32),
        ("name", ctypes.c_char * 16),
        ("ifindex", c_u32),
        ("btf_vmlinux_value_type_id", c_u32),
        ("netns_dev", c_u64),
        ("netns_ino", c_u64),
        ("btf_id", c_u32),
        ("btf_key_type_id", c_u32),
        ("btf_value_type_id", c_u32),
        ("_pad", c_u32),
        ("map_extra", c_u64),
    ]


class BpfMapCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("btf_fd", c_u32),
        ("btf_key_type_id", c_u32),
        ("btf_value_type_id", c_u32),
        ("btf_vmlinux_value_type_id", c_u32),
        ("inner_map_fd", c_u32),
        ("map_flags", c_u32),
        ("map_extra", c_u64),
        ("numa_node", c_u32),
        ("map_ifindex", c_u32),
    ]


class BpfMapBatchOpts(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("elem_flags", c_u64), ("flags", c_u64)]


class BpfTcHook(ctypes.Structure):
    """``struct bpf_tc_hook``: an interface's TC hook (clsact qdisc)."""

    _fields_ = [("sz", c_size_t), ("ifindex", c_int), ("attach_point", c_int), ("parent", c_u32), ("_pad", c_u32)]


class BpfTcOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_u32),
        ("prog_id", c_u32),
        ("handle", c_u32),
        ("priority", c_u32),
        ("_pad", c_u32),
    ]


BPF_TC_INGRESS = 1 << 0

# enum bpf_map_type (linux/bpf.h): the ones the project names
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_LPM_TRIE = 11
PER_CPU_MAP_TYPES = (BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH)
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_MMAPABLE = 1 << 10

BPF_PROG_TYPE_XDP = 6
BPF_F_XDP_HAS_FRAGS = 1 << 5  # a multi-buffer XDP program (Linux 5.18)


class BpfProgLoadOpts(ctypes.Structure):
    """``struct bpf_prog_load_opts``, up to the fields used (libbpf takes a shorter sz)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("attempts", c_int),
        ("expected_attach_type", c_int),
        ("prog_btf_fd", c_u32),
        ("prog_flags", c_u32),
        ("prog_ifindex", c_u32),
        ("kern_version", c_u32),
    ]


LIBBPF_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    return ctypes.CDLL(name, use_errno=True)


lib = _load()

_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
    "bpf_program__flags": (c_u32, [c_void_p]),
    "bpf_program__set_flags": (c_int, [c_void_p, c_u32]),
    "bpf_prog_load": (c_int, [c_int, c_char_p, c_char_p, c_void_p, ctypes.c_size_t, ctypes.POINTER(BpfProgLoadOpts)]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_xdp_attach": (c_int, [c_int, c_int, c_u32, ctypes.POINTER(BpfXdpAttachOpts)]),
    "bpf_xdp_detach": (c_int, [c_int, c_u32, ctypes.POINTER(BpfXdpAttachOpts)]),
    "bpf_xdp_query": (c_int, [c_int, c_int, ctypes.POINTER(BpfXdpQueryOpts)]),
    "bpf_prog_get_fd_by_id": (c_int, [c_u32]),
    "bpf_map_get_fd_by_id": (c_int, [c_u32]),
    "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, ctypes.POINTER(c_u32)]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_u64]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_lookup_batch": (
        c_int,
        [c_int, c_void_p, c_void_p, c_void_p, c_void_p, ctypes.POINTER(c_u32), ctypes.POINTER(BpfMapBatchOpts)],
    ),
    "bpf_map_delete_batch": (c_int, [c_int, c_void_p, ctypes.POINTER(c_u32), ctypes.POINTER(BpfMapBatchOpts)]),
    "bpf_map_update_batch": (
        c_int,
        [c_int, c_void_p, c_void_p, ctypes.POINTER(c_u32), ctypes.POINTER(BpfMapBatchOpts)],
    ),
    "bpf_map_create": (c_int, [c_int, c_char_p, c_u32, c_u32, c_u32, ctypes.POINTER(BpfMapCreateOpts)]),
    "bpf_tc_hook_create": (c_int, [ctypes.POINTER(BpfTcHook)]),
    "bpf_tc_attach": (c_int, [ctypes.POINTER(BpfTcHook), ctypes.POINTER(BpfTcOpts)]),
    "bpf_prog_test_run_opts": (c_int, [c_int, ctypes.POINTER(BpfTestRunOpts)]),
    "libbpf_num_possible_cpus": (c_int, []),
    "libbpf_set_print": (c_void_p, [c_void_p]),
    "libbpf_get_error": (ctypes.c_long, [c_void_p]),
    # xdprouter capture: the perf buffer
    "perf_buffer__new": (c_void_p, [c_int, c_size_t, c_void_p, c_void_p, c_void_p, c_void_p]),
    "perf_buffer__poll": (c_int, [c_void_p, c_int]),
    "perf_buffer__free": (None, [c_void_p]),
}

PERF_SAMPLE_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_void_p, c_u32)  # ctx, cpu, data, size
PERF_LOST_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_u64)  # ctx, cpu, count

for _name, (_restype, _argtypes) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes


# libc: vsnprintf formats libbpf's log lines; syscall(2) reaches membarrier(2).
libc = ctypes.CDLL(None, use_errno=True)
libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
libc.vsnprintf.restype = c_int
libc.syscall.restype = ctypes.c_long

MEMBARRIER_CMD_GLOBAL = 1
# membarrier(2): x86_64 has its own number, the generic table (arm64, riscv) another
SYS_MEMBARRIER = {"x86_64": 324, "aarch64": 283, "riscv64": 283}.get(os.uname().machine, 283)

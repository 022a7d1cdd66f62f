"""The XDP hook of an interface: what is attached (``query``), attaching and
detaching a program in a mode, and whether this kernel takes multi-buffer
XDP programs (``frags_supported``)."""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

from ..errors import BpfError
from . import _libbpf as L
from .bpf import _check, _log


@dataclass
class XdpState:
    """What is attached to an interface (bpf_xdp_query)."""

    prog_id: int
    mode: str  # "native", "generic", "offload", "multi" or "none"


_MODES = {
    L.XDP_ATTACHED_NONE: "none",
    L.XDP_ATTACHED_DRV: "native",
    L.XDP_ATTACHED_SKB: "generic",
    L.XDP_ATTACHED_HW: "offload",
    L.XDP_ATTACHED_MULTI: "multi",
}
MODE_FLAGS = {"native": L.XDP_FLAGS_DRV_MODE, "generic": L.XDP_FLAGS_SKB_MODE}


def query(ifindex: int) -> XdpState:
    opts = L.BpfXdpQueryOpts(sz=ctypes.sizeof(L.BpfXdpQueryOpts))
    _check(L.lib.bpf_xdp_query(ifindex, 0, ctypes.byref(opts)), f"querying XDP on ifindex {ifindex}")
    mode = _MODES.get(opts.attach_mode, "unknown")
    prog_id = opts.prog_id or opts.drv_prog_id or opts.skb_prog_id or opts.hw_prog_id
    return XdpState(prog_id, mode)


_EXTACK = "Kernel error message:"


@functools.cache
def frags_supported() -> bool:
    """Does this kernel load multi-buffer XDP programs (BPF_F_XDP_HAS_FRAGS,
    Linux 5.18)? Asked by loading a two-instruction XDP_PASS program with the
    flag. ``XDPR_SINGLE_BUFFER=1`` answers no, to try the fallback."""
    if os.environ.get("XDPR_SINGLE_BUFFER") == "1":
        return False
    insns = bytes.fromhex("b7000000020000009500000000000000")  # r0 = XDP_PASS; exit
    opts = L.BpfProgLoadOpts(sz=ctypes.sizeof(L.BpfProgLoadOpts), prog_flags=L.BPF_F_XDP_HAS_FRAGS)
    fd = L.lib.bpf_prog_load(L.BPF_PROG_TYPE_XDP, b"xdpr_frags", b"GPL", insns, 2, ctypes.byref(opts))
    if fd < 0:
        return False
    os.close(fd)
    return True


def attach(ifindex: int, prog_fd: int, mode: str, *, old_prog_fd: int | None = None) -> None:
    """Attach in ``mode``; with ``old_prog_fd``, replace only that program."""
    flags = MODE_FLAGS[mode]
    opts = L.BpfXdpAttachOpts(sz=ctypes.sizeof(L.BpfXdpAttachOpts))
    if old_prog_fd is None:
        flags |= L.XDP_FLAGS_UPDATE_IF_NOEXIST
    else:
        flags |= L.XDP_FLAGS_REPLACE
        opts.old_prog_fd = old_prog_fd
    first = len(_log)
    rc = L.lib.bpf_xdp_attach(ifindex, prog_fd, flags, ctypes.byref(opts))
    if rc < 0:
        # the driver's reason, when it gave one (netlink extended ack, which libbpf prints)
        said = [m.split(_EXTACK, 1)[1].strip() for m in _log[first:] if _EXTACK in m]
        del _log[first:]
        raise BpfError(f"attaching XDP ({mode})", -rc if rc != -1 else ctypes.get_errno(), meaning="; ".join(said))


def detach(ifindex: int, mode: str) -> None:
    _check(L.lib.bpf_xdp_detach(ifindex, MODE_FLAGS[mode], None), f"detaching XDP ({mode})")

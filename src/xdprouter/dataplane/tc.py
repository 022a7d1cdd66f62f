"""The TC hook of an interface: a program on its ingress (a clsact qdisc
and a direct-action BPF filter, through libbpf's bpf_tc_* calls). The
attachment lives as long as the interface or the qdisc."""

from __future__ import annotations

import ctypes
import errno

from . import _libbpf as L
from .bpf import _check, _log


def attach_ingress(ifindex: int, prog_fd: int) -> None:
    """Run the SCHED_CLS program ``prog_fd`` on every frame ``ifindex``
    receives (its verdict is the frame's: TC_ACT_*, redirects included)."""
    hook = L.BpfTcHook(sz=ctypes.sizeof(L.BpfTcHook), ifindex=ifindex, attach_point=L.BPF_TC_INGRESS)
    rc = L.lib.bpf_tc_hook_create(ctypes.byref(hook))
    if rc < 0 and -rc != errno.EEXIST:
        _check(rc, f"creating the TC hook of ifindex {ifindex}")
    opts = L.BpfTcOpts(sz=ctypes.sizeof(L.BpfTcOpts), prog_fd=prog_fd, handle=1, priority=1)
    _log.clear()
    _check(L.lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)), f"attaching to TC ingress of ifindex {ifindex}")

"""The fast path's copy of the IPv6 local table (bpf/include/fib6_local.h), and the probe that says if it is current.

With no policy rules the kernel looks an IPv6 destination up in the local
table and then in the main table. The program skips the first walk for a
destination that is none of the local table's routes, which it can tell from
this copy for as long as the table's serial number is the one read just
before the copy was made. Only /128 routes (our own and anycast addresses)
can be copied; prefixes no forwarded frame can match (multicast, link-local:
the program hands those to the kernel before any lookup) are left out; any
other prefix leaves the copy incomplete, and every frame gets the full lookup.
"""

from __future__ import annotations

import errno
import ipaddress
import threading
from collections.abc import Iterable
from pathlib import Path

from . import netlink
from .dataplane import abi, bpf
from .errors import BpfError, UsageError

PROBE_OBJECT = "fib6_probe.bpf.o"
# destinations the program never looks up (ipv6_address_reason())
_NEVER_LOOKED_UP = (ipaddress.IPv6Network("ff00::/8"), ipaddress.IPv6Network("fe80::/10"))


def local6_table(routes: Iterable[ipaddress.IPv6Network]) -> list[bytes] | None:
    """The open-addressing table of ``routes`` (LOCAL6_SLOTS addresses, zeros
    for empty), or None if some route is a prefix a forwarded frame could
    match or the addresses do not fit."""
    table = [bytes(16)] * abi.LOCAL6_SLOTS
    for net in sorted(set(routes)):
        if any(net.subnet_of(never) for never in _NEVER_LOOKED_UP):
            continue
        if net.prefixlen != 128:
            return None
        addr = net.network_address.packed
        if addr == bytes(16):
            continue  # "::" is a martian destination, never looked up
        home = abi.local6_slot(addr)
        for i in range(abi.LOCAL6_PROBES):
            slot = (home + i) & (abi.LOCAL6_SLOTS - 1)
            if table[slot] == bytes(16):
                table[slot] = addr
                break
        else:
            return None
    return table


def probe_object(router_object: Path) -> Path:
    """The probe's object file, built beside the router's."""
    path = router_object.with_name(PROBE_OBJECT)
    if not path.exists():
        raise UsageError(f"BPF object {path} not found: run `make bpf` first")
    return path


_probes: dict[Path, bpf.Object] = {}  # loaded once a process: a load costs more than the copy
_probe_lock = threading.Lock()  # one run and its result read at a time


def probe(router_object: Path) -> abi.Fib6Probe:
    """The local table's serial number and whether it may be used, read by
    running the probe program in the caller's namespace (the namespace is
    the caller's at run time, so one loaded probe serves every namespace)."""
    path = probe_object(router_object)
    with _probe_lock:
        obj = _probes.get(path)
        if obj is None:
            obj = _probes[path] = bpf.Object(str(path))
        run = obj.program(abi.PROBE_PROG).test_run(bytes(64))
        found = obj.map(abi.PROBE_MAP).lookup_as(0, abi.Fib6Probe)
    if run.retval != abi.XdpAction.PASS or found is None:
        raise BpfError(f"the IPv6 local table probe failed (returned {run.retval})", errno.EIO)
    return found


def sync(local6: bpf.Map, state: bpf.Map, router_object: Path) -> bool:
    """Copy the local table into ``local6`` and mark it complete in
    ``state`` if it can be: True when the program may use it.

    The program reads the state, searches the copy, and reads the state's
    generation again; every write here changes the generation, so a search
    that overlapped a rewrite is not trusted."""
    old = state.lookup_as(0, abi.Local6State)
    gen = old.gen if old else 0
    state.update(0, abi.Local6State(gen=gen + 1))  # full lookups while the copy changes
    try:
        live = probe(router_object)  # read before the table: a change after it shows
    except BpfError:
        return False  # the full lookup is always right
    if live.state != abi.Fib6Local.OK:
        return False
    table = local6_table(netlink.ipv6_local_table())
    if table is None:
        return False
    local6.write_changed(table)
    state.update(0, abi.Local6State(sernum=live.sernum, complete=1, gen=gen + 2))
    return True


def in_use(state: bpf.Map, router_object: Path) -> bool:
    """Is the copy complete and the local table unchanged since (so the
    program looks non-local destinations up in the main table alone)?"""
    copy = state.lookup_as(0, abi.Local6State)
    if copy is None:
        return False
    try:
        live = probe(router_object)
    except BpfError:
        return False
    return bool(copy.complete) and live.state == abi.Fib6Local.OK and live.sernum == copy.sernum

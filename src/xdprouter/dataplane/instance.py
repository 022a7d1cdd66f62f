"""The data plane attached in this namespace: found through the interfaces, opened, locked (one context manager).

No state lives in files: every command finds the program again through the
interfaces' attached XDP program and opens its maps by id, so it works from
a fresh process under ``ip netns exec`` where /sys/fs/bpf is empty. Changes
are serialised per namespace by a lock file in /run/lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .. import netlink
from ..errors import BpfError, UsageError
from . import abi, bpf, xdp
from .abi_fw import FW_MAPS
from .abi_steer import STEER_MAPS

NOT_ATTACHED = "xdprouter is not attached in this namespace"


class Instance:
    """The loaded data plane of this namespace: its program, its maps, and
    what the namespace's interfaces had attached when it was found."""

    def __init__(
        self,
        prog: bpf.Program,
        maps: dict[str, bpf.Map],
        links: list[netlink.Link],
        obj: bpf.Object | None = None,
    ) -> None:
        self.prog = prog
        self.maps = maps
        self.links = links  # the namespace's interfaces, listed once when it was found
        self.states = xdp_states(links)  # ifindex -> XDP state, every interface with a program
        self._obj = obj  # keeps a freshly loaded object's fds alive
        self.prog_id = prog.info().id

    def modes(self) -> dict[int, str]:
        """ifindex -> XDP mode of every interface this program is attached to."""
        return {i: s.mode for i, s in self.states.items() if s.prog_id == self.prog_id}

    def require(self, names: tuple[str, ...], why: str) -> None:
        missing = set(names) - set(self.maps)
        if missing:
            names_ = ", ".join(sorted(missing))
            raise UsageError(f"the attached xdprouter program has no {why} maps ({names_}): re-attach after `make bpf`")

    def _ifaces(self, ifindex: int) -> bpf.Map:
        """The array for small ifindexes, the hash for the rest."""
        return self.maps[abi.MAP_IFACES if ifindex < abi.IFACE_ARRAY_SIZE else abi.MAP_IFACES_HI]

    def config(self, ifindex: int) -> abi.IfaceConfig | None:
        config = self._ifaces(ifindex).lookup_as(ifindex, abi.IfaceConfig)
        return config if config and config.slot else None

    def configs(self) -> dict[int, abi.IfaceConfig]:
        """ifindex -> config of every attached interface (slot != 0)."""
        out = {}
        for ifindex, raw in enumerate(self.maps[abi.MAP_IFACES].values()):
            config = abi.IfaceConfig.from_buffer_copy(raw)
            if config.slot:
                out[ifindex] = config
        for ifindex in self.maps[abi.MAP_IFACES_HI].keys():
            if config := self.config(ifindex):
                out[ifindex] = config
        return out

    def set_config(self, ifindex: int, config: abi.IfaceConfig) -> None:
        self._ifaces(ifindex).update(ifindex, config)

    def delete_config(self, ifindex: int) -> None:
        if ifindex < abi.IFACE_ARRAY_SIZE:
            self.set_config(ifindex, abi.IfaceConfig())  # slot 0: not attached
        else:
            self.maps[abi.MAP_IFACES_HI].delete(ifindex)

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        self.prog.close()
        if self._obj:
            self._obj.close()


def xdp_states(links: list[netlink.Link]) -> dict[int, xdp.XdpState]:
    """ifindex -> XDP state, for every interface of ``links`` with a program."""
    out = {}
    for link in links:
        try:
            state = xdp.query(link.index)
        except BpfError:
            continue
        if state.prog_id:
            out[link.index] = state
    return out


def _open(prog_id: int, links: list[netlink.Link]) -> Instance | None:
    """The instance behind ``prog_id`` if it is xdprouter's (its name, its maps)."""
    prog = bpf.Program.from_id(prog_id)
    if prog.info().name.decode() != abi.PROG_NAME:
        prog.close()
        return None
    maps = {}
    for map_id in prog.map_ids():
        m = bpf.Map.from_id(map_id)
        if m.name in abi.ROUTER_MAPS or m.name in FW_MAPS or m.name in STEER_MAPS:
            maps[m.name] = m
        else:
            m.close()
    if not set(abi.ROUTER_MAPS) <= set(maps):
        for m in maps.values():
            m.close()
        prog.close()
        return None
    return Instance(prog, maps, links)


def find(links: list[netlink.Link] | None = None) -> Instance | None:
    """The namespace's instance, opened (the caller closes it), or None."""
    links = netlink.links() if links is None else links
    for prog_id in dict.fromkeys(s.prog_id for s in xdp_states(links).values()):
        inst = _open(prog_id, links)
        if inst:
            return inst
    return None


def load(object_path: Path, links: list[netlink.Link]) -> Instance:
    """A new instance from the object file, not attached anywhere yet."""
    if not object_path.exists():
        raise UsageError(f"BPF object {object_path} not found: run `make bpf` first")
    obj = bpf.Object(str(object_path), frags=xdp.frags_supported())
    maps = {name: obj.map(name) for name in abi.ROUTER_MAPS}
    return Instance(obj.program(abi.PROG_NAME), maps, links, obj)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One control-plane change at a time per namespace."""
    ino = os.stat("/proc/self/ns/net").st_ino
    lockdir = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    with open(lockdir / f"xdprouter-{ino}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def maybe_attached(*, lock: bool = False) -> Iterator[Instance | None]:
    """The namespace's instance (None if there is none) for the time of the
    block, under the namespace lock if ``lock``."""
    with locked() if lock else contextlib.nullcontext():
        inst = find()
        try:
            yield inst
        finally:
            if inst:
                inst.close()


@contextlib.contextmanager
def attached(*, lock: bool = False, missing: str = NOT_ATTACHED) -> Iterator[Instance]:
    """As maybe_attached(), raising UsageError(missing) when there is none."""
    with maybe_attached(lock=lock) as inst:
        if inst is None:
            raise UsageError(missing)
        yield inst

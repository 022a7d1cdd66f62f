"""The control plane: load the data plane once per namespace, attach it,
keep its maps in step with the interfaces, read its counters.

No state lives in files: every command finds the router again through the
interfaces' attached XDP program and that program's maps, so it works from a
fresh process under ``ip netns exec`` where /sys/fs/bpf is empty.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import abi, bpf, local6, netlink, system
from .errors import BpfError, UsageError

MODES = ("native", "generic", "auto")


def default_object_path() -> Path:
    env = os.environ.get("XDPROUTER_BPF_OBJECT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "build" / "xdp_router.bpf.o"


@dataclass
class IfaceStatus:
    name: str
    ifindex: int
    mode: str
    prog_id: int
    route_hint: bool = False  # frames may reuse a lookup within a NAPI poll (native mode)


@dataclass
class IfaceCounters:
    """Counters of one interface, summed over CPUs."""

    name: str
    reasons: dict[str, abi.Counter] = field(default_factory=dict)

    def packets(self, verdict: abi.Verdict) -> int:
        return sum(c.packets for r, c in self._by_reason() if r.verdict is verdict)

    def bytes(self, verdict: abi.Verdict) -> int:
        return sum(c.bytes for r, c in self._by_reason() if r.verdict is verdict)

    def _by_reason(self) -> Iterator[tuple[abi.Reason, abi.Counter]]:
        for name, counter in self.reasons.items():
            yield abi.Reason[name.upper()], counter

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {v.name.lower(): self.packets(v) for v in abi.Verdict}
        out["bytes"] = {v.name.lower(): self.bytes(v) for v in abi.Verdict}
        out["reasons"] = {
            name: {"packets": c.packets, "bytes": c.bytes} for name, c in self.reasons.items() if c.packets
        }
        return out


_ACTIONS = {0: "aborted", 1: "drop", 2: "pass", 3: "tx", 4: "redirect"}


@dataclass
class TestRunResult:
    """Where the fast path would send one frame (BPF_PROG_RUN)."""

    action: str  # "redirect", "tx", "pass", "drop" or "aborted"
    reason: abi.Reason | None  # None if the counters moved ambiguously
    data: bytes  # the frame as it would leave (MACs, TTL, checksum rewritten)
    duration_ns: int


@dataclass
class LookupCounters:
    """Lookups the fast path saved or shortened (docs/design.md)."""

    hint_uses: int = 0  # frames that reused the route hint instead of a lookup
    ipv6_main_only: int = 0  # IPv6 lookups made in the main table alone


@dataclass
class AttachReport:
    """What attach did, and what the operator should know."""

    attached: list[IfaceStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Instance:
    """The loaded data plane of this namespace: its program and maps."""

    def __init__(self, prog: bpf.Program, maps: dict[str, bpf.Map], obj: bpf.Object | None = None) -> None:
        self.prog = prog
        self.maps = maps
        self._obj = obj  # keeps a freshly loaded object's fds alive
        self.prog_id = prog.info().id

    def _ifaces(self, ifindex: int) -> bpf.Map:
        """The array for small ifindexes, the hash for the rest."""
        return self.maps[abi.MAP_IFACES if ifindex < abi.IFACE_ARRAY_SIZE else abi.MAP_IFACES_HI]

    def config(self, ifindex: int) -> abi.IfaceConfig | None:
        raw = self._ifaces(ifindex).lookup(ctypes.c_uint32(ifindex))
        config = abi.IfaceConfig.from_buffer_copy(raw) if raw is not None else None
        return config if config and config.slot else None

    def configs(self) -> dict[int, abi.IfaceConfig]:
        """ifindex -> config of every attached interface (slot != 0)."""
        out = {}
        high = self.maps[abi.MAP_IFACES_HI].keys(ctypes.c_uint32)
        for ifindex in (*range(abi.IFACE_ARRAY_SIZE), *high):
            if config := self.config(ifindex):
                out[ifindex] = config
        return out

    def set_config(self, ifindex: int, config: abi.IfaceConfig) -> None:
        self._ifaces(ifindex).update(ctypes.c_uint32(ifindex), config)

    def delete_config(self, ifindex: int) -> None:
        if ifindex < abi.IFACE_ARRAY_SIZE:
            self.set_config(ifindex, abi.IfaceConfig())  # slot 0: not attached
        else:
            self.maps[abi.MAP_IFACES_HI].delete(ctypes.c_uint32(ifindex))

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        self.prog.close()
        if self._obj:
            self._obj.close()


def _is_ours(prog: bpf.Program) -> bool:
    return prog.info().name.decode() == abi.PROG_NAME


def _open_instance(prog_id: int) -> _Instance | None:
    prog = bpf.Program.from_id(prog_id)
    if not _is_ours(prog):
        prog.close()
        return None
    maps = {}
    for map_id in prog.map_ids():
        m = bpf.Map.from_id(map_id)
        if m.name in abi.ROUTER_MAPS:
            maps[m.name] = m
        else:
            m.close()
    if len(maps) != len(abi.ROUTER_MAPS):
        for m in maps.values():
            m.close()
        prog.close()
        return None
    return _Instance(prog, maps)


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(b, 16) for b in mac.split(":"))


class Router:
    """xdprouter in the caller's network namespace.

    >>> r = Router()
    >>> r.attach(["veth0", "veth1"], mode="auto")   # doctest: +SKIP
    >>> r.stats()["veth0"].packets(abi.Verdict.FORWARDED)   # doctest: +SKIP
    """

    def __init__(self, object_path: str | os.PathLike[str] | None = None) -> None:
        self.object_path = Path(object_path) if object_path else default_object_path()

    # -- discovery -------------------------------------------------------

    def _attached(self) -> dict[int, bpf.XdpState]:
        """ifindex -> XDP state, for every interface with a program."""
        out = {}
        for link in netlink.links():
            try:
                state = bpf.xdp_query(link.index)
            except BpfError:
                continue
            if state.prog_id:
                out[link.index] = state
        return out

    def _find(self, attached: dict[int, bpf.XdpState]) -> _Instance | None:
        seen: set[int] = set()
        for state in attached.values():
            if state.prog_id in seen:
                continue
            seen.add(state.prog_id)
            inst = _open_instance(state.prog_id)
            if inst:
                return inst
        return None

    def _load(self) -> _Instance:
        if not self.object_path.exists():
            raise UsageError(f"BPF object {self.object_path} not found: run `make bpf` first")
        obj = bpf.Object(str(self.object_path))
        maps = {name: obj.map(name) for name in abi.ROUTER_MAPS}
        return _Instance(obj.program(abi.PROG_NAME), maps, obj)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One control-plane change at a time per namespace."""
        ino = os.stat("/proc/self/ns/net").st_ino
        lockdir = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
        with open(lockdir / f"xdprouter-{ino}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    # -- commands --------------------------------------------------------

    def attach(self, names: list[str], mode: str = "auto", force: bool = False) -> AttachReport:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r} (native, generic or auto)")
        _require_root()
        links = netlink.resolve(names)
        local6.probe_object(self.object_path)  # missing: fail before anything changes
        with self._locked():
            attached = self._attached()
            inst = self._find(attached)
            try:
                foreign = self._foreign(links, attached, inst, force)
                if inst is None:
                    inst = self._load()
                report = AttachReport()
                full = _full_source_check()
                for link in links:
                    report.attached.append(
                        self._attach_one(inst, link, mode, attached.get(link.index), foreign, report, full)
                    )
                self._snapshot(inst, full)
                report.warnings += _bypass_warnings()
                return report
            finally:
                if inst:
                    inst.close()

    def refresh(self, warnings: bool = True) -> AttachReport:
        """Take the attach-time snapshot again for every attached interface
        (addresses, the IPv6 local table's copy, MACs, sysctls): what
        ``attach`` of the same interfaces would do, without naming them.
        ``warnings=False`` skips reading the routes and netfilter rules for
        warnings (the daemon renews often, a full table takes seconds)."""
        _require_root()
        local6.probe_object(self.object_path)
        with self._locked():
            attached = self._attached()
            inst = self._find(attached)
            if inst is None:
                raise UsageError("xdprouter is not attached in this namespace")
            try:
                self._snapshot(inst, _full_source_check())
                return AttachReport(warnings=_bypass_warnings() if warnings else [])
            finally:
                inst.close()

    def _foreign(
        self, links: list[netlink.Link], attached: dict[int, bpf.XdpState], inst: _Instance | None, force: bool
    ) -> dict[int, int]:
        """ifindex -> id of a program that is not ours; refused without force."""
        foreign = {
            link.index: attached[link.index].prog_id
            for link in links
            if link.index in attached and (inst is None or attached[link.index].prog_id != inst.prog_id)
        }
        if foreign and not force:
            names = ", ".join(f"{link.name} (prog id {foreign[link.index]})" for link in links if link.index in foreign)
            raise UsageError(f"another XDP program is attached to {names}: detach it or use --force to replace it")
        return foreign

    def _attach_one(
        self,
        inst: _Instance,
        link: netlink.Link,
        mode: str,
        current: bpf.XdpState | None,
        foreign: dict[int, int],
        report: AttachReport,
        full_source_check: bool,
    ) -> IfaceStatus:
        key = ctypes.c_uint32(link.index)
        configs = inst.configs()
        old_config = configs.get(link.index)
        slot = old_config.slot if old_config else _free_slot(configs)
        config = abi.IfaceConfig(slot=slot, flags=_flags(link, full_source_check))
        config.mac[:] = list(_mac_bytes(link.mac))
        inst.set_config(key.value, config)
        if old_config is None:
            inst.maps[abi.MAP_STATS].update(
                ctypes.c_uint32(slot), bytes((ctypes.sizeof(abi.IfaceStats) + 7) // 8 * 8 * bpf.possible_cpus())
            )
        inst.maps[abi.MAP_TX_PORTS].update(key, key)
        try:
            final_mode = self._xdp_attach(inst, link, mode, current, foreign.get(link.index), report)
        except BaseException:
            if old_config is None:
                inst.maps[abi.MAP_TX_PORTS].delete(key)
                inst.delete_config(key.value)
            raise
        return IfaceStatus(link.name, link.index, final_mode, inst.prog_id)

    def _xdp_attach(
        self,
        inst: _Instance,
        link: netlink.Link,
        mode: str,
        current: bpf.XdpState | None,
        foreign_id: int | None,
        report: AttachReport,
    ) -> str:
        ours = current is not None and current.prog_id == inst.prog_id
        if ours and current is not None and (mode == "auto" or mode == current.mode):
            return current.mode  # idempotent: already there
        if ours and current is not None:
            bpf.xdp_detach(link.index, current.mode)  # switching modes
        old_fd: int | None = None
        with contextlib.ExitStack() as stack:
            if foreign_id is not None and current is not None:
                if current.mode in bpf.MODE_FLAGS and (mode == "auto" or mode == current.mode):
                    old_fd = stack.enter_context(bpf.opened_program(foreign_id)).fd
                else:
                    bpf.xdp_detach(link.index, current.mode)
            for candidate in ("native", "generic") if mode == "auto" else (mode,):
                if old_fd is not None and current is not None and candidate != current.mode:
                    continue
                try:
                    bpf.xdp_attach(link.index, inst.prog.fd, candidate, old_prog_fd=old_fd)
                except BpfError as e:
                    if mode == "auto" and candidate == "native" and e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                        report.warnings.append(f"{link.name}: native XDP not supported ({e}), using generic mode")
                        continue
                    if e.errno == errno.EPERM:
                        raise UsageError(f"attaching to {link.name}: operation not permitted (needs root)") from e
                    raise UsageError(f"attaching to {link.name} in {candidate} mode: {os.strerror(e.errno)}") from e
                return candidate
        raise UsageError(f"attaching to {link.name}: no mode worked")

    def _snapshot(self, inst: _Instance, full_source_check: bool) -> None:
        """Take the attach-time snapshot: our IPv4 addresses, the IPv6 local
        table's copy (local6.py), every interface's MAC and sysctls."""
        inst.maps[abi.MAP_LOCAL4].write_changed(local4_table(netlink.ipv4_addresses()))
        local6.sync(inst.maps[abi.MAP_LOCAL6], inst.maps[abi.MAP_LOCAL6_STATE], self.object_path)
        self._refresh(inst, full_source_check)

    def _refresh(self, inst: _Instance, full_source_check: bool) -> None:
        """Renew every attached interface's snapshot (MAC, sysctls); forget
        interfaces that went away (the kernel already took them out of the devmap)."""
        alive = {link.index: link for link in netlink.links()}
        for ifindex, config in inst.configs().items():
            key = ctypes.c_uint32(ifindex)
            link = alive.get(ifindex)
            if link is None:
                inst.delete_config(key.value)
                continue
            config.flags = _flags(link, full_source_check, native=self._native(inst, ifindex))
            config.mac[:] = list(_mac_bytes(link.mac))
            inst.set_config(key.value, config)

    @staticmethod
    def _native(inst: _Instance, ifindex: int) -> bool:
        """Is our program attached to ifindex in native (driver) mode?"""
        try:
            state = bpf.xdp_query(ifindex)
        except BpfError:
            return False
        return state.prog_id == inst.prog_id and state.mode == "native"

    def detach(self, names: list[str] | None = None) -> list[str]:
        """Detach from the interfaces named, or from all (``names=None``)."""
        _require_root()
        links = netlink.resolve(names) if names is not None else netlink.links()
        with self._locked():
            attached = self._attached()
            inst = self._find(attached)
            if inst is None:
                if names:
                    raise UsageError(f"xdprouter is not attached to {', '.join(names)}")
                return []
            try:
                ours = [
                    link
                    for link in links
                    if attached.get(link.index, None) and attached[link.index].prog_id == inst.prog_id
                ]
                if names is not None and len(ours) != len(links):
                    missing = [link.name for link in links if link not in ours]
                    raise UsageError(f"xdprouter is not attached to {', '.join(missing)}")
                for link in ours:
                    key = ctypes.c_uint32(link.index)
                    bpf.xdp_detach(link.index, attached[link.index].mode)
                    inst.maps[abi.MAP_TX_PORTS].delete(key)
                    inst.delete_config(key.value)
                return [link.name for link in ours]
            finally:
                inst.close()

    def status(self) -> list[IfaceStatus]:
        _require_root()
        attached = self._attached()
        inst = self._find(attached)
        if inst is None:
            return []
        try:
            names = {link.index: link.name for link in netlink.links()}
            configs = inst.configs()
            return [
                IfaceStatus(names[i], i, s.mode, s.prog_id, _route_hint(configs.get(i)))
                for i, s in sorted(attached.items())
                if s.prog_id == inst.prog_id
            ]
        finally:
            inst.close()

    def ipv6_main_only(self) -> bool:
        """Are IPv6 destinations outside the local table looked up in the main
        table alone (local6.py): is the program's copy complete and current?"""
        _require_root()
        inst = self._find(self._attached())
        if inst is None:
            return False
        try:
            return local6.in_use(inst.maps[abi.MAP_LOCAL6_STATE], self.object_path)
        finally:
            inst.close()

    def test_run(self, frame: bytes, iface: str, repeat: int = 1) -> TestRunResult:
        """Run the attached program on ``frame`` as if it arrived on ``iface``.

        Runs in the caller's namespace with its real FIB and neighbours, and
        counts like a real frame. The reason is read from the counters: if
        other traffic hits the interface meanwhile, the run is repeated (the
        verdict and bytes are the same each time) until one reason alone moved.
        """
        _require_root()
        (link,) = netlink.resolve([iface])
        inst = self._find(self._attached())
        if inst is None:
            raise UsageError("xdprouter is not attached in this namespace")
        try:
            config = inst.config(link.index)
            slot = config.slot if config else abi.UNCONFIGURED_SLOT
            for _ in range(5):
                before = self._slot_packets(inst, slot)
                run = inst.prog.test_run(frame, ingress_ifindex=link.index, repeat=repeat)
                after = self._slot_packets(inst, slot)
                moved = [r for r in abi.Reason if after[r] != before[r]]
                if len(moved) == 1 and after[moved[0]] - before[moved[0]] == repeat:
                    break
        finally:
            inst.close()
        reason = moved[0] if len(moved) == 1 else None
        return TestRunResult(_ACTIONS.get(run.retval, str(run.retval)), reason, run.data, run.duration_ns)

    @staticmethod
    def _slot_packets(inst: _Instance, slot: int) -> dict[abi.Reason, int]:
        per_cpu = inst.maps[abi.MAP_STATS].lookup_per_cpu(ctypes.c_uint32(slot), abi.IfaceStats)
        return {r: sum(cpu.reasons[r].packets for cpu in per_cpu) for r in abi.Reason}  # type: ignore[attr-defined]

    def program_info(self) -> bpf.L.BpfProgInfo | None:
        inst = self._find(self._attached())
        if inst is None:
            return None
        try:
            return inst.prog.info()
        finally:
            inst.close()

    def lookup_counters(self) -> LookupCounters:
        """How the fast path's FIB lookups were made, over all CPUs, ever."""
        _require_root()
        inst = self._find(self._attached())
        if inst is None:
            return LookupCounters()
        try:
            per_cpu = inst.maps[abi.MAP_FIB_HINT].lookup_per_cpu(ctypes.c_uint32(0), abi.FibHint)
            return LookupCounters(
                hint_uses=sum(h.uses for h in per_cpu),  # type: ignore[attr-defined]
                ipv6_main_only=sum(h.main_only for h in per_cpu),  # type: ignore[attr-defined]
            )
        finally:
            inst.close()

    def stats(self) -> dict[str, IfaceCounters]:
        """Counters per attached interface (and ``(unconfigured)`` if any)."""
        _require_root()
        inst = self._find(self._attached())
        if inst is None:
            return {}
        try:
            names = {link.index: link.name for link in netlink.links()}
            slots = {names[i]: c.slot for i, c in inst.configs().items() if i in names}
            slots["(unconfigured)"] = abi.UNCONFIGURED_SLOT
            out = {}
            for name, slot in slots.items():
                per_cpu = inst.maps[abi.MAP_STATS].lookup_per_cpu(ctypes.c_uint32(slot), abi.IfaceStats)
                counters = IfaceCounters(name)
                for reason in abi.Reason:
                    total = abi.Counter()
                    for cpu in per_cpu:
                        total.packets += cpu.reasons[reason].packets  # type: ignore[attr-defined]
                        total.bytes += cpu.reasons[reason].bytes  # type: ignore[attr-defined]
                    counters.reasons[reason.name.lower()] = total
                if name != "(unconfigured)" or any(c.packets for c in counters.reasons.values()):
                    out[name] = counters
            return out
        finally:
            inst.close()


def local4_table(addresses: Iterable[ipaddress.IPv4Address]) -> list[bytes]:
    """Slot -> address (network byte order, zero = empty) as ipv4_is_local() probes it."""
    table = [bytes(4)] * abi.LOCAL4_SLOTS
    for addr in sorted(addresses):
        if int(addr) == 0:
            continue
        home = abi.local4_slot(int(addr))
        for probe in range(abi.LOCAL4_PROBES):
            slot = (home + probe) % abi.LOCAL4_SLOTS
            if table[slot] == bytes(4):
                table[slot] = addr.packed
                break
        else:
            raise UsageError(f"too many IPv4 addresses for the martian-source table ({addr} does not fit)")
    return table


def _free_slot(configs: dict[int, abi.IfaceConfig]) -> int:
    used = {c.slot for c in configs.values()}
    for slot in range(1, abi.MAX_IFACES):
        if slot not in used:
            return slot
    raise UsageError(f"too many interfaces attached (at most {abi.MAX_IFACES - 1})")


def _route_hint(config: abi.IfaceConfig | None) -> bool:
    return config is not None and bool(config.flags & abi.IfaceFlag.ROUTE_HINT)


def _flags(link: netlink.Link, full_source_check: bool, native: bool = False) -> int:
    ifname = link.name
    flags = abi.IfaceFlag(0)
    # Only in native mode is every devmap redirect in the interface's NAPI
    # poll one of ours, which the route hint relies on; on PREEMPT_RT two
    # NAPI threads on one CPU could interleave in its per-CPU state
    # (docs/design.md).
    if native and not system.preempt_rt():
        flags |= abi.IfaceFlag.ROUTE_HINT
    if link.kind == "veth":
        flags |= abi.IfaceFlag.TX_VIA_DEVMAP
    if system.send_redirects(ifname):
        flags |= abi.IfaceFlag.SEND_REDIRECTS
    if system.ipv6_forwarding(ifname):
        flags |= abi.IfaceFlag.IPV6_FORWARDING
    rp_filter = system.rp_filter(ifname)
    if full_source_check or rp_filter:
        flags |= abi.IfaceFlag.SOURCE_CHECK_FULL
    if rp_filter == 1:
        flags |= abi.IfaceFlag.RP_FILTER_STRICT
    elif rp_filter == 2:
        flags |= abi.IfaceFlag.RP_FILTER_LOOSE
    return int(flags)


def _full_source_check() -> bool:
    """Does fib_validate_source() take its full form in this namespace?"""
    return netlink.has_policy_rules() or system.has_custom_local_routes()


def _bypass_warnings() -> list[str]:
    warnings: list[str] = []
    mtu_routes = system.routes_with_unlocked_mtu()
    if mtu_routes:
        shown = ", ".join(mtu_routes[:5]) + (f" and {len(mtu_routes) - 5} more" if len(mtu_routes) > 5 else "")
        warnings.append(
            f"routes with an unlocked mtu metric ({shown}): Linux honours that MTU when forwarding but the "
            "fast path's FIB lookup only honours a locked one, so oversize frames would be forwarded; "
            "lock it (ip route change ... mtu lock N) to make both agree (docs/operations.md)"
        )
    chains = system.netfilter_forward_chains()
    if chains:
        warnings.append(
            f"netfilter rules on the forwarding path ({'; '.join(chains)}) are bypassed by frames the fast "
            "path forwards: move them to xdprouter's firewall, or detach (docs/operations.md)"
        )
    return warnings


def _require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("must run as root (XDP needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)")

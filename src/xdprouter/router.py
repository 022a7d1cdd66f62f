"""The control plane's router: attach and detach the data plane, keep its maps in step, read its counters.

The instance attached in the namespace is found again by every command
(dataplane/instance.py); the attach-time snapshot of addresses and sysctls
is snapshot.py's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import local6, netlink, snapshot
from .dataplane import abi, bpf, instance, xdp
from .dataplane.instance import Instance
from .errors import BpfError, UsageError
from .steer.api import forget_sockets

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


_ACTIONS = {a.value: a.name.lower() for a in abi.XdpAction}


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


class Router:
    """xdprouter in the caller's network namespace.

    >>> r = Router()
    >>> r.attach(["veth0", "veth1"], mode="auto")   # doctest: +SKIP
    >>> r.stats()["veth0"].packets(abi.Verdict.FORWARDED)   # doctest: +SKIP
    """

    def __init__(self, object_path: str | os.PathLike[str] | None = None) -> None:
        self.object_path = Path(object_path) if object_path else default_object_path()

    # -- commands --------------------------------------------------------

    def attach(self, names: list[str], mode: str = "auto", force: bool = False) -> AttachReport:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r} (native, generic or auto)")
        _require_root()
        links = netlink.resolve(names)
        local6.probe_object(self.object_path)  # missing: fail before anything changes
        with instance.maybe_attached(lock=True) as found, contextlib.ExitStack() as stack:
            all_links = found.links if found else netlink.links()
            inst = found or stack.enter_context(contextlib.closing(instance.load(self.object_path, all_links)))
            foreign = _foreign(links, inst.states, found, force)
            report = AttachReport()
            full = snapshot.full_source_check()
            configs = inst.configs()
            modes = inst.modes()
            for link in links:
                status = self._attach_one(inst, link, mode, configs, foreign.get(link.index), report, full)
                modes[link.index] = status.mode
                report.attached.append(status)
            self._snapshot(inst, full, modes, fresh={link.index for link in links})
            report.warnings += snapshot.bypass_warnings()
            return report

    def refresh(self, warnings: bool = True) -> AttachReport:
        """Take the attach-time snapshot again for every attached interface
        (addresses, the IPv6 local table's copy, MACs, sysctls): what
        ``attach`` of the same interfaces would do, without naming them.
        ``warnings=False`` skips reading the routes and netfilter rules for
        warnings (the daemon renews often, a full table takes seconds)."""
        _require_root()
        local6.probe_object(self.object_path)
        with instance.attached(lock=True) as inst:
            self._snapshot(inst, snapshot.full_source_check(), inst.modes())
            return AttachReport(warnings=snapshot.bypass_warnings() if warnings else [])

    def _attach_one(
        self,
        inst: Instance,
        link: netlink.Link,
        mode: str,
        configs: dict[int, abi.IfaceConfig],
        foreign_id: int | None,
        report: AttachReport,
        full_source_check: bool,
    ) -> IfaceStatus:
        """Attach to one interface, then write its config once, knowing the
        mode it got (``configs`` gains it: the next one takes another slot)."""
        old_config = configs.get(link.index)
        slot = old_config.slot if old_config else _free_slot(configs)
        if old_config is None:
            inst.maps[abi.MAP_STATS].zero(slot)
            forget_sockets(inst, slot)
        inst.maps[abi.MAP_TX_PORTS].update(link.index, link.index)
        try:
            final_mode = self._xdp_attach(inst, link, mode, inst.states.get(link.index), foreign_id, report)
        except BaseException:
            if old_config is None:
                inst.maps[abi.MAP_TX_PORTS].delete(link.index)
            raise
        configs[link.index] = snapshot.iface_config(link, slot, full_source_check, native=final_mode == "native")
        inst.set_config(link.index, configs[link.index])
        return IfaceStatus(link.name, link.index, final_mode, inst.prog_id)

    def _xdp_attach(
        self,
        inst: Instance,
        link: netlink.Link,
        mode: str,
        current: xdp.XdpState | None,
        foreign_id: int | None,
        report: AttachReport,
    ) -> str:
        ours = current is not None and current.prog_id == inst.prog_id
        if ours and current is not None and (mode == "auto" or mode == current.mode):
            return current.mode  # idempotent: already there
        if ours and current is not None:
            xdp.detach(link.index, current.mode)  # switching modes
        old_fd: int | None = None
        with contextlib.ExitStack() as stack:
            if foreign_id is not None and current is not None:
                if current.mode in xdp.MODE_FLAGS and (mode == "auto" or mode == current.mode):
                    old_fd = stack.enter_context(bpf.opened_program(foreign_id)).fd
                else:
                    xdp.detach(link.index, current.mode)
            for candidate in ("native", "generic") if mode == "auto" else (mode,):
                if old_fd is not None and current is not None and candidate != current.mode:
                    continue
                try:
                    xdp.attach(link.index, inst.prog.fd, candidate, old_prog_fd=old_fd)
                except BpfError as e:
                    if e.errno == errno.EPERM:
                        raise UsageError(f"attaching to {link.name}: operation not permitted (needs root)") from e
                    why, todo = _refusal(link, e, xdp.frags_supported())
                    if mode == "auto" and candidate == "native":
                        report.warnings.append(f"{link.name}: native mode refused: {why}; using generic mode")
                        continue
                    todo = f": {todo}" if candidate == "native" else ""
                    raise UsageError(f"attaching to {link.name} in {candidate} mode: {why}{todo}") from e
                return candidate
        raise UsageError(f"attaching to {link.name}: no mode worked")

    def _snapshot(
        self, inst: Instance, full_source_check: bool, modes: dict[int, str], fresh: set[int] | None = None
    ) -> None:
        """Take the attach-time snapshot: our IPv4 addresses, the IPv6 local
        table's copy (local6.py), and the MAC and sysctls of every attached
        interface but the ``fresh`` ones, whose config was just written;
        interfaces that went away are forgotten (the kernel already took
        them out of the devmap). ``modes``: ifindex -> XDP mode we are in."""
        inst.maps[abi.MAP_LOCAL4].write_changed(snapshot.local4_table(netlink.ipv4_addresses()))
        local6.sync(inst.maps[abi.MAP_LOCAL6], inst.maps[abi.MAP_LOCAL6_STATE], self.object_path)
        alive = {link.index: link for link in inst.links}
        for ifindex, config in inst.configs().items():
            link = alive.get(ifindex)
            if link is None:
                inst.delete_config(ifindex)
            elif ifindex not in (fresh or ()):
                native = modes.get(ifindex) == "native"
                inst.set_config(ifindex, snapshot.iface_config(link, config.slot, full_source_check, native=native))

    def detach(self, names: list[str] | None = None) -> list[str]:
        """Detach from the interfaces named, or from all (``names=None``)."""
        _require_root()
        links = netlink.resolve(names) if names is not None else netlink.links()
        with instance.maybe_attached(lock=True) as inst:
            if inst is None:
                if names:
                    raise UsageError(f"xdprouter is not attached to {', '.join(names)}")
                return []
            modes = inst.modes()
            ours = [link for link in links if link.index in modes]
            if names is not None and len(ours) != len(links):
                missing = [link.name for link in links if link not in ours]
                raise UsageError(f"xdprouter is not attached to {', '.join(missing)}")
            for link in ours:
                xdp.detach(link.index, modes[link.index])
                inst.maps[abi.MAP_TX_PORTS].delete(link.index)
                inst.delete_config(link.index)
            return [link.name for link in ours]

    def status(self) -> list[IfaceStatus]:
        _require_root()
        with instance.maybe_attached() as inst:
            if inst is None:
                return []
            names = {link.index: link.name for link in inst.links}
            configs = inst.configs()
            return [
                IfaceStatus(names[i], i, mode, inst.prog_id, _route_hint(configs.get(i)))
                for i, mode in sorted(inst.modes().items())
            ]

    def ipv6_main_only(self) -> bool:
        """Are IPv6 destinations outside the local table looked up in the main
        table alone (local6.py): is the program's copy complete and current?"""
        _require_root()
        with instance.maybe_attached() as inst:
            return inst is not None and local6.in_use(inst.maps[abi.MAP_LOCAL6_STATE], self.object_path)

    def test_run(self, frame: bytes, iface: str, repeat: int = 1) -> TestRunResult:
        """Run the attached program on ``frame`` as if it arrived on ``iface``.

        Runs in the caller's namespace with its real FIB and neighbours, and
        counts like a real frame. The reason is read from the counters: if
        other traffic hits the interface meanwhile, the run is repeated (the
        verdict and bytes are the same each time) until one reason alone moved.
        """
        _require_root()
        (link,) = netlink.resolve([iface])
        with instance.attached() as inst:
            return _run_on(inst, frame, link.index, repeat)

    @contextlib.contextmanager
    def test_runner(self) -> Iterator[Callable[[bytes, str], TestRunResult]]:
        """``test_run`` with the attached program and its maps held open for
        the block, for callers that poll: each call is one BPF_PROG_RUN and a
        few map reads, where ``test_run`` lists the interfaces and opens
        everything first. Call it from the namespace it was opened in."""
        _require_root()
        with instance.attached() as inst:

            def run(frame: bytes, iface: str) -> TestRunResult:
                try:
                    ifindex = socket.if_nametoindex(iface)
                except OSError:
                    raise UsageError(f"unknown interface {iface}") from None
                return _run_on(inst, frame, ifindex, 1)

            yield run

    def program_info(self) -> bpf.L.BpfProgInfo | None:
        with instance.maybe_attached() as inst:
            return inst.prog.info() if inst else None

    def lookup_counters(self) -> LookupCounters:
        """How the fast path's FIB lookups were made, over all CPUs, ever."""
        _require_root()
        with instance.maybe_attached() as inst:
            if inst is None:
                return LookupCounters()
            per_cpu = inst.maps[abi.MAP_FIB_HINT].lookup_per_cpu(0, abi.FibHint)
            return LookupCounters(
                hint_uses=sum(h.uses for h in per_cpu),
                ipv6_main_only=sum(h.main_only for h in per_cpu),
            )

    def stats(self) -> dict[str, IfaceCounters]:
        """Counters per attached interface (and ``(unconfigured)`` if any)."""
        _require_root()
        with instance.maybe_attached() as inst:
            if inst is None:
                return {}
            names = {link.index: link.name for link in inst.links}
            slots = {names[i]: c.slot for i, c in inst.configs().items() if i in names}
            slots["(unconfigured)"] = abi.UNCONFIGURED_SLOT
            out = {}
            for name, slot in slots.items():
                counters = IfaceCounters(name, {r.name.lower(): c for r, c in _slot_counters(inst, slot).items()})
                if name != "(unconfigured)" or any(c.packets for c in counters.reasons.values()):
                    out[name] = counters
            return out


def _run_on(inst: Instance, frame: bytes, ifindex: int, repeat: int) -> TestRunResult:
    """One BPF_PROG_RUN of the attached program on ``frame`` as arrived on
    ``ifindex``, its reason read from the counters (repeated while other
    traffic moves them too)."""
    config = inst.config(ifindex)
    slot = config.slot if config else abi.UNCONFIGURED_SLOT
    for _ in range(5):
        before = _slot_counters(inst, slot)
        run = inst.prog.test_run(frame, ingress_ifindex=ifindex, repeat=repeat)
        after = _slot_counters(inst, slot)
        moved = [r for r in abi.Reason if after[r].packets != before[r].packets]
        if len(moved) == 1 and after[moved[0]].packets - before[moved[0]].packets == repeat:
            break
    reason = moved[0] if len(moved) == 1 else None
    action = _ACTIONS.get(run.retval, str(run.retval))
    return TestRunResult(action, reason, run.data, run.duration_ns)


def _slot_counters(inst: Instance, slot: int) -> dict[abi.Reason, abi.Counter]:
    """Counters of one stats slot, summed over CPUs."""
    per_cpu = inst.maps[abi.MAP_STATS].lookup_per_cpu(slot, abi.IfaceStats)
    out = {}
    for reason in abi.Reason:
        total = abi.Counter()
        for cpu in per_cpu:
            total.packets += cpu.reasons[reason].packets
            total.bytes += cpu.reasons[reason].bytes
        out[reason] = total
    return out


def _foreign(
    links: list[netlink.Link], states: dict[int, xdp.XdpState], inst: Instance | None, force: bool
) -> dict[int, int]:
    """ifindex -> id of a program that is not ours; refused without force."""
    foreign = {
        link.index: states[link.index].prog_id
        for link in links
        if link.index in states and (inst is None or states[link.index].prog_id != inst.prog_id)
    }
    if foreign and not force:
        names = ", ".join(f"{link.name} (prog id {foreign[link.index]})" for link in links if link.index in foreign)
        raise UsageError(f"another XDP program is attached to {names}: detach it or use --force to replace it")
    return foreign


def _free_slot(configs: dict[int, abi.IfaceConfig]) -> int:
    used = {c.slot for c in configs.values()}
    for slot in range(1, abi.MAX_IFACES):
        if slot not in used:
            return slot
    raise UsageError(f"too many interfaces attached (at most {abi.MAX_IFACES - 1})")


def _route_hint(config: abi.IfaceConfig | None) -> bool:
    return config is not None and bool(config.flags & abi.IfaceFlag.ROUTE_HINT)


def _refusal(link: netlink.Link, e: BpfError, frags: bool) -> tuple[str, str]:
    """Why the kernel refused an attach, and what to do, in words an
    operator can act on: its errno and the driver's own message if it gave
    one; for a refusal over the MTU (ERANGE: veth, mlx5, virtio...) that the
    MTU is the cause."""
    why = os.strerror(e.errno) + (f" ({e.meaning})" if e.meaning else "")
    todo = "use --mode generic"
    if e.errno == errno.ERANGE or "mtu" in e.meaning.lower():
        kind = "multi-buffer XDP" if frags else "XDP on this kernel, which has no multi-buffer XDP"
        why += f": MTU {link.mtu} of {link.name} or its peer is more than the driver takes for {kind}"
        todo = f"lower the MTU (ip link set dev {link.name} mtu 1500) or use --mode generic"
    elif e.errno == errno.EOPNOTSUPP:
        why += f": the driver of {link.name} has no native XDP"
    return why, todo


def _require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("must run as root (XDP needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)")

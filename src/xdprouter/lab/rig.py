"""The benchmark's rig: its cases, the frames each loop host sends, and a
lab whose router can be put in each configuration and measured.

``Bench`` prepares the lab (routes for every case, permanent neighbours, the
closed loop's programs on both hosts), puts the router in a configuration
(Linux, xdprouter, the reference, a wire) and measures one case with the
closed loop (``traffic.Loop``). ``bench.py`` and ``fwbench.py`` build their
reports on it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, summarize_address_range
from pathlib import Path

from ..dataplane import bpf, xdp
from ..router import Router, default_object_path
from . import Lab, netns, profile, sh
from .traffic import Loop, Traffic, Vary

CONFIGS = ("linux", "xdprouter", "reference")
WIRE = "wire"  # the loop through a router that only hands each frame to its other interface
# the 64-byte cases: profiled with --profile, and measured on the forwarding path with BPF_PROG_RUN
CASES_64B = ("ipv4-64B-1flow", "ipv4-64B-manyflows", "ipv6-64B-1flow", "ipv6-64B-manyflows")
# many-destination cases: h1's frames go to ROUTES_*[0] (via h2), h2's to ROUTES_*[1] (via h1)
ROUTES_V4 = ("10.200.0.0/16", "10.201.0.0/16")
ROUTES_V6 = ("fd00:200::/64", "fd00:201::/64")
TABLE_BASE = 11 << 24  # the full-table case: /24s from 11.0.0.0 upwards
# (covering routes, full table, which destinations)
TABLE_PAIRS = (
    ("ipv4-64B-spread", "ipv4-64B-fulltable", "a destination in every /24 of the table"),
    ("ipv4-64B-spread-sparse", "ipv4-64B-fulltable-sparse", "a destination in one /24 of every 256"),
)


@dataclass(frozen=True)
class Case:
    name: str
    ipv6: bool
    size: int  # frame length without FCS (60 = a "64-byte" frame on the wire)
    flows: int = 1
    dsts: int = 1
    dst_shift: int = 0
    table: bool = False  # needs the full routing table loaded
    spread: bool = False  # destinations spread over the full table's /24s

    @property
    def family(self) -> str:
        return "IPv6" if self.ipv6 else "IPv4"


def default_cases(table_routes: int) -> list[Case]:
    cases = []
    for ipv6 in (False, True):
        fam = "ipv6" if ipv6 else "ipv4"
        small = 62 if ipv6 else 60  # IPv6 + UDP headers alone are 62 bytes
        cases += [
            Case(f"{fam}-64B-1flow", ipv6, small),
            Case(f"{fam}-64B-manyflows", ipv6, small, flows=1024, dsts=256),
            Case(f"{fam}-1500B-1flow", ipv6, 1514),
        ]
    if table_routes:
        # the same destinations twice: first under two covering routes, then
        # with one /24 route each, so the difference is the table's alone;
        # destinations in every /24 of the table (each lookup a cold walk),
        # and in one /24 of every 256 (a few thousand, as traffic that
        # concentrates on fewer prefixes)
        for (base, full, _), dsts, shift in zip(
            TABLE_PAIRS, (table_routes, max(1, table_routes >> 8)), (8, 16), strict=True
        ):
            spread = {"flows": 1024, "dsts": dsts, "dst_shift": shift, "spread": True}
            cases.append(Case(base, False, 60, **spread))  # type: ignore[arg-type]
            cases.append(Case(full, False, 60, table=True, **spread))  # type: ignore[arg-type]
    return cases


@dataclass
class Measurement:
    config: str
    case: str
    forwarded: int  # every frame the router forwarded in the run (arrivals at both hosts)
    lost: int  # frames of the loop that never retired
    in_flight: int
    window_frames: int  # forwarded within the timed window
    seconds: float  # the window's
    cpu_seconds: float  # busy time of all CPUs over the whole run
    prog_ns: float  # the router's XDP program alone, ns per run (kernel.bpf_stats_enabled); 0 for linux

    @property
    def pps(self) -> float:
        return self.window_frames / self.seconds if self.seconds else 0.0

    @property
    def loss(self) -> float:
        return self.lost / self.in_flight if self.in_flight else 0.0


def _cpu_busy_seconds() -> float:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _ip(addr: int) -> str:
    return socket.inet_ntoa(addr.to_bytes(4, "big"))


def table_halves(routes: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The full table's /24s (first index, count): the first half routed via
    h2 (h1's frames go there), the second via h1 (h2's frames go there)."""
    half = (routes + 1) // 2
    return (0, half), (half, routes - half)


def covering_routes(routes: int) -> list[tuple[str, int]]:
    """(prefix, half) pairs that cover each half of the table exactly, for
    the spread cases before the table itself is loaded."""
    out = []
    for side, (first, count) in enumerate(table_halves(routes)):
        if count:
            lo = IPv4Address(TABLE_BASE + (first << 8))
            hi = IPv4Address(TABLE_BASE + ((first + count) << 8) - 1)
            out += [(str(net), side) for net in summarize_address_range(lo, hi)]
    return out


@dataclass(frozen=True)
class Frames:
    """What each loop host sends: its frame and how its sequence varies."""

    a: bytes
    b: bytes
    vary_a: Vary
    vary_b: Vary


def build_frames(lab: Lab, case: Case, macs: dict[str, str], table_routes: int) -> Frames:
    """h1's frames to h2's side of the router and h2's to h1's, alike."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    vary = [Vary(flows=case.flows, dsts=case.dsts, dst_shift=case.dst_shift)] * 2
    if case.ipv6:
        dsts = [r.split("::")[0] + "::1" for r in ROUTES_V6] if case.dsts > 1 else [lab.h2.ip6, lab.h1.ip6]
        l3 = [IPv6(src=lab.h1.ip6, dst=dsts[0], hlim=64), IPv6(src=lab.h2.ip6, dst=dsts[1], hlim=64)]
    elif case.spread:
        l3 = []
        for side, (first, count) in enumerate(table_halves(table_routes)):
            n = count if case.dst_shift == 8 else max(1, count >> 8)
            vary[side] = Vary(flows=case.flows, dsts=max(1, n), dst_shift=case.dst_shift)
            src = lab.h2.ip4 if side else lab.h1.ip4
            l3.append(IP(src=src, dst=_ip(TABLE_BASE + (first << 8) + 1), ttl=64))
    else:
        dsts = [r.replace(".0/16", ".1") for r in ROUTES_V4] if case.dsts > 1 else [lab.h2.ip4, lab.h1.ip4]
        l3 = [IP(src=lab.h1.ip4, dst=dsts[0], ttl=64), IP(src=lab.h2.ip4, dst=dsts[1], ttl=64)]
    out = []
    for eth, ip in zip((Ether(dst=macs["r1"], src=macs["h1"]), Ether(dst=macs["r2"], src=macs["h2"])), l3, strict=True):
        frame = eth / ip / UDP(sport=10000, dport=9)
        out.append(bytes(frame / (b"\x00" * max(0, case.size - len(frame)))))
    return Frames(out[0], out[1], vary[0], vary[1])


class Bench:
    def __init__(
        self, lab: Lab, traffic: Traffic, frames: int, reps: int, log: Callable[[str], None], profiling: bool = False
    ) -> None:
        self.lab = lab
        self.profiling = profiling
        self.profiles: dict[str, dict[str, profile.Profile]] = {}
        self.traffic = traffic
        self.loop = Loop(traffic, lab)
        self.frames = frames
        self.reps = reps
        self.log = log
        self.table_routes = 0
        self.macs = {
            "r1": lab.mac(lab.router, lab.router_ifaces[0]),
            "r2": lab.mac(lab.router, lab.router_ifaces[1]),
            "h1": lab.mac(lab.h1.ns, lab.h1.iface),
            "h2": lab.mac(lab.h2.ns, lab.h2.iface),
        }
        self.router_mac, self.host_mac = self.macs["r1"], self.macs["h1"]
        self._reference: bpf.Object | None = None
        self._config = "linux"

    def prepare(self, table_routes: int = 0) -> None:
        """Routes for every case, permanent neighbours, the loop's programs on both hosts."""
        lab = self.lab
        self.table_routes = table_routes
        hosts = (lab.h2, lab.h1)  # ROUTES_*[i] and table half i are routed via hosts[i]
        for v4, v6, host in zip(ROUTES_V4, ROUTES_V6, hosts, strict=True):
            lab.ip(lab.router, "route", "add", v4, "via", host.ip4)
            lab.ip(lab.router, "-6", "route", "add", v6, "via", host.ip6)
        for prefix, side in covering_routes(table_routes):  # the full table's range, before it is loaded
            lab.ip(lab.router, "route", "add", prefix, "via", hosts[side].ip4)
        for flag, addr in (("-4", lab.h2.ip4), ("-6", lab.h2.ip6)):
            lab.run(lab.h1.ns, "ping", flag, "-c", "1", "-W", "2", addr)
        # the loop's frames outnumber everything else: neighbours made
        # permanent so that none is probed again in the middle of a run
        for host, iface, mac in ((lab.h1, lab.router_ifaces[0], "h1"), (lab.h2, lab.router_ifaces[1], "h2")):
            for addr in (host.ip4, host.ip6):
                lab.ip(lab.router, "neigh", "replace", addr, "lladdr", self.macs[mac], "dev", iface, "nud", "permanent")
        self.loop.__enter__()

    def close(self) -> None:
        self.loop.close()

    def load_table(self, routes: int) -> float:
        hosts = (self.lab.h2, self.lab.h1)
        (_, half), _ = table_halves(routes)
        lines = "".join(
            f"route add {_ip(TABLE_BASE + (i << 8))}/24 via {hosts[i >= half].ip4}\n" for i in range(routes)
        )
        with tempfile.NamedTemporaryFile("w", suffix=".routes") as fh:
            fh.write(lines)
            fh.flush()
            start = time.monotonic()
            sh("ip", "-n", self.lab.router, "-batch", fh.name, timeout=600)
            return time.monotonic() - start

    @contextlib.contextmanager
    def configured(self, config: str) -> Iterator[None]:
        """The router as ``config`` has it: xdprouter, the reference, a wire,
        or Linux alone (with ``xdp_pass`` on its interfaces: a veth takes its
        peer's XDP_TX frames reliably only with a program of its own)."""
        lab = self.lab
        if config == "xdprouter":
            lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
        elif config == "reference":
            self._attach_reference()
        else:
            self._attach_helper(self.traffic.wire if config == WIRE else self.traffic.pass_)
        self._config = config
        try:
            yield
        finally:
            self._config = "linux"
            if config == "xdprouter":
                lab.xdprouter("detach", "--all")
            elif config == "reference":
                self._detach_reference()
            else:
                self._detach_helper()

    def _attach_helper(self, prog: bpf.Program) -> None:
        with netns(self.lab.router):  # a devmap resolves an ifindex in the caller's namespace
            self.traffic.wire_ports(*(socket.if_nametoindex(name) for name in self.lab.router_ifaces))
        for name in self.lab.router_ifaces:
            self.traffic.attach(self.lab.router, name, prog)

    def _detach_helper(self) -> None:
        for name in self.lab.router_ifaces:
            self.traffic.detach(self.lab.router, name)

    def _attach_reference(self) -> None:
        path = default_object_path().parent / "reference.bpf.o"
        # multi-buffer like the router: xdp_gen_chain tail-calls either
        self._reference = bpf.Object(str(path), frags=xdp.frags_supported())
        prog = self._reference.program("xdp_reference")
        ports = self._reference.map("ref_tx_ports")
        with netns(self.lab.router):
            for name in self.lab.router_ifaces:
                ifindex = socket.if_nametoindex(name)
                ports.update(ifindex, ifindex)
                xdp.attach(ifindex, prog.fd, "native")

    def _detach_reference(self) -> None:
        with netns(self.lab.router):
            for name in self.lab.router_ifaces:
                xdp.detach(socket.if_nametoindex(name), "native")
        if self._reference:
            self._reference.close()
            self._reference = None

    def _prog_runtime(self) -> tuple[int, int]:
        """(run_time_ns, run_cnt) of the router's program, from bpf_stats."""
        if self._config == "reference" and self._reference:
            info = self._reference.program("xdp_reference").info()
        elif self._config == "xdprouter":
            with netns(self.lab.router):
                found = Router().program_info()
            if found is None:
                return (0, 0)
            info = found
        else:
            return (0, 0)
        return (info.run_time_ns, info.run_cnt)

    def measure(self, config: str, case: Case) -> Measurement:
        """One rate measurement, bpf_stats off: its clock reads would slow the
        router and the loop's hosts alike."""
        f = build_frames(self.lab, case, self.macs, self.table_routes)
        frames = self.frames if case.size < 1000 else max(self.frames // 4, 1000)
        self.loop.run(f.a, f.b, max(frames // 10, 4096), vary_a=f.vary_a, vary_b=f.vary_b)  # warm up
        cpu0 = _cpu_busy_seconds()
        run = self.loop.run(f.a, f.b, frames, vary_a=f.vary_a, vary_b=f.vary_b)
        cpu1 = _cpu_busy_seconds()
        return Measurement(
            config,
            case.name,
            run.forwarded,
            run.lost,
            run.in_flight,
            run.window_frames,
            run.window_seconds,
            cpu1 - cpu0,
            0.0,
        )

    def program_ns(self, case: Case, frames: int = 200_000) -> float:
        """The router program's own ns per frame under this load (bpf_stats on)."""
        if self._config not in ("xdprouter", "reference"):
            return 0.0
        f = build_frames(self.lab, case, self.macs, self.table_routes)
        with _bpf_stats():
            ns0, cnt0 = self._prog_runtime()
            self.loop.run(f.a, f.b, frames, vary_a=f.vary_a, vary_b=f.vary_b)
            ns1, cnt1 = self._prog_runtime()
        return (ns1 - ns0) / (cnt1 - cnt0) if cnt1 > cnt0 else 0.0

    def source(self, cases: list[Case]) -> tuple[dict[str, float], float]:
        """The loop alone: its rate through a wire (each frame handed to the
        router's other interface, no lookup, no rewrite), per case, and the
        hosts' program's ns per frame (bpf_stats)."""
        out: dict[str, float] = {}
        with self.configured(WIRE):
            for case in cases:
                out[case.name] = statistics.median(self.measure(WIRE, case).pps for _ in range(self.reps)) / 1e6
            f = build_frames(self.lab, cases[0], self.macs, self.table_routes)
            with _bpf_stats():
                before = [p.info() for p in (self.traffic.loop_a, self.traffic.loop_b)]
                self.loop.run(f.a, f.b, 200_000, vary_a=f.vary_a, vary_b=f.vary_b)
                after = [p.info() for p in (self.traffic.loop_a, self.traffic.loop_b)]
        ns = sum(a.run_time_ns - b.run_time_ns for a, b in zip(after, before, strict=True))
        cnt = sum(a.run_cnt - b.run_cnt for a, b in zip(after, before, strict=True))
        return out, ns / cnt if cnt else 0.0

    def run_cases(self, cases: list[Case], results: dict[tuple[str, str], list[Measurement]]) -> None:
        for config in CONFIGS:
            with self.configured(config):
                for case in cases:
                    runs = results.setdefault((case.name, config), [])
                    runs += [self.measure(config, case) for _ in range(self.reps)]
                    runs[-1].prog_ns = self.program_ns(case)
                    if self.profiling and case.name in CASES_64B:
                        self.profiles.setdefault(case.name, {})[config] = self.profiled(config, case)
                    med = statistics.median(r.pps for r in runs)
                    self.log(f"  {case.name:<26} {config:<10} {med / 1e6:7.2f} Mpps  loss {runs[-1].loss:6.2%}")

    def profiled(self, config: str, case: Case) -> profile.Profile:
        """Where CPU 0's time goes in one more measurement, under perf."""
        with profile.recording(cpu=0) as out:
            self.measure(config, case)
        return out[0]


@contextlib.contextmanager
def _bpf_stats() -> Iterator[None]:
    """kernel.bpf_stats_enabled for the block: run_time_ns / run_cnt per program."""
    path = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = path.read_text().strip()
    path.write_text("1")
    try:
        yield
    finally:
        path.write_text(before)

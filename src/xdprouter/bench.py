"""`xdprouter bench`: forwarding rate of Linux, xdprouter and a minimal
reference fast path, measured in one run on one lab.

The load is a closed loop (``traffic.Loop``): XDP programs on h1 and h2 send
every frame that arrives back into the router, so the router forwards both
ways as fast as it can, and every frame it forwards is counted on arrival.
For every case and configuration the result is frames forwarded per second,
loss and CPU time; the ratios to Linux in the same run are what the benchmark
reports, and the loop's own rate through a bare wire says how fast the
source is alone. Also: the program's own cost per verdict path
(BPF_PROG_RUN with repeat) and its instruction counts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, summarize_address_range
from pathlib import Path

from . import fwbench, profile
from .dataplane import bpf
from .errors import BpfError, UsageError
from .lab import Lab, netns, sh
from .router import Router
from .traffic import IN_FLIGHT, Loop, Traffic, Vary

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


@dataclass
class Result:
    case: str
    config: str
    mpps: float  # median over repetitions
    loss: float
    cpu_ns_per_frame: float
    prog_ns_per_frame: float
    runs: list[float] = field(default_factory=list)


@dataclass
class Report:
    results: list[Result]
    ratios: dict[str, dict[str, float]]  # case -> {"xdprouter/linux", "reference/linux", "xdprouter/reference"}
    program_ns: dict[str, float]  # non-forwarding verdict path -> ns per frame (BPF_PROG_RUN repeat)
    instructions: dict[str, dict[str, int]]
    table_routes: int
    table_load_seconds: float
    notes: list[str]
    firewall: fwbench.FirewallReport | None = None
    profiles: dict[str, dict[str, profile.Profile]] = field(default_factory=dict)  # case -> config -> profile
    forwarding_ns: dict[str, dict[str, float]] = field(default_factory=dict)  # case -> config -> ns per frame
    source_mpps: dict[str, float] = field(default_factory=dict)  # case -> the loop through a wire (no lookup)
    source_ns: float = 0.0  # the loop hosts' XDP program, ns per frame (bpf_stats)

    def as_dict(self) -> dict[str, object]:
        return {
            "results": [asdict(r) for r in self.results],
            "ratios": self.ratios,
            "source_mpps": self.source_mpps,
            "source_program_ns": self.source_ns,
            "program_ns_per_frame": self.program_ns,
            "forwarding_ns_per_frame": self.forwarding_ns,
            "instructions": self.instructions,
            "table_routes": self.table_routes,
            "table_load_seconds": self.table_load_seconds,
            "notes": self.notes,
            "firewall": self.firewall.as_dict() if self.firewall else None,
            "profiles": {c: {k: p.as_dict() for k, p in by.items()} for c, by in self.profiles.items()},
        }


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
        path = Path(__file__).resolve().parents[2] / "build" / "reference.bpf.o"
        self._reference = bpf.Object(str(path))
        prog = self._reference.program("xdp_reference")
        ports = self._reference.map("ref_tx_ports")
        with netns(self.lab.router):
            for name in self.lab.router_ifaces:
                key = ctypes.c_uint32(socket.if_nametoindex(name))
                ports.update(key, key)
                bpf.xdp_attach(key.value, prog.fd, "native")

    def _detach_reference(self) -> None:
        with netns(self.lab.router):
            for name in self.lab.router_ifaces:
                bpf.xdp_detach(socket.if_nametoindex(name), "native")
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

    def program_costs(self, repeat: int = 200_000) -> dict[str, float]:
        """ns per frame of the program alone on the paths that leave a frame
        as it is (BPF_PROG_RUN repeat reruns one buffer, so a forwarded frame
        would be rewritten again and again: forwarding's own cost comes from
        bpf_stats during the live runs instead)."""
        from scapy.layers.inet import IP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.l2 import ARP, Ether

        lab = self.lab
        eth = Ether(dst=self.router_mac, src=self.host_mac)
        lab.ip(lab.router, "route", "add", "blackhole", "10.202.0.0/16")
        paths = {
            "pass ttl_expired": eth / IP(src=lab.h1.ip4, dst=lab.h2.ip4, ttl=1) / UDP() / (b"\0" * 18),
            "pass not_our_mac": Ether(dst="02:00:00:00:00:99") / IP(src=lab.h1.ip4, dst=lab.h2.ip4) / UDP(),
            "pass not_ip (ARP)": Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=lab.h1.gw4),
            "drop blackhole": eth / IP(src=lab.h1.ip4, dst="10.202.0.1") / UDP() / (b"\0" * 18),
            "pass no route (ipv6)": eth / IPv6(src=lab.h1.ip6, dst="fd99::1") / UDP() / (b"\0" * 2),
        }
        out: dict[str, float] = {}
        with self.configured("xdprouter"), netns(lab.router):
            router = Router()
            for name, pkt in paths.items():
                out[name] = router.test_run(bytes(pkt), "veth1", repeat=repeat).duration_ns
        return out

    def forwarding_costs(self, cases: list[Case], repeat: int = 300_000) -> dict[str, dict[str, float]]:
        """ns per frame of each program on the forwarding path, BPF_PROG_RUN
        with repeat: the generator writes every frame afresh and tail-calls the
        program (traffic.send_through), nothing is sent (no veth, no sink, and
        so no route hint: it lives one receive batch of carried-out
        redirects); the generator's own cost, measured alone, is taken off.
        Best of 3."""
        lab = self.lab
        with netns(lab.router):
            veth1 = socket.if_nametoindex(lab.router_ifaces[0])
        out: dict[str, dict[str, float]] = {}
        for config in ("xdprouter", "reference"):
            with self.configured(config), netns(lab.router):
                if config == "xdprouter":
                    info = Router().program_info()
                    assert info is not None
                    prog = bpf.Program.from_id(info.id)
                else:
                    assert self._reference is not None
                    prog = bpf.Program(self._reference.program("xdp_reference").fd)
                try:
                    for case in cases:
                        f = build_frames(lab, case, self.macs, self.table_routes)
                        ns = self._best_ns(prog, veth1, f.a, repeat, f.vary_a) - self._best_ns(
                            None, veth1, f.a, repeat, f.vary_a
                        )
                        out.setdefault(case.name, {})[config] = float(max(0, ns))
                finally:
                    prog.close()  # a no-op for the reference's borrowed fd
        return out

    def _best_ns(self, prog: bpf.Program | None, ifindex: int, frame: bytes, repeat: int, vary: Vary) -> int:
        return min(self.traffic.send_through(prog, ifindex, frame, repeat, vary).ns_per_frame for _ in range(3))

    def instructions(self) -> dict[str, dict[str, int]]:
        out = {}
        with self.configured("xdprouter"), netns(self.lab.router):
            info = Router().program_info()
            assert info is not None
            out["xdprouter"] = {"verified": info.verified_insns, "xlated": info.xlated_prog_len // 8}
        with self.configured("reference"):
            assert self._reference is not None
            info = self._reference.program("xdp_reference").info()
            out["reference"] = {"verified": info.verified_insns, "xlated": info.xlated_prog_len // 8}
        return out


def run(
    frames: int = 1_000_000,
    reps: int = 3,
    table_routes: int = 800_000,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    firewall: tuple[int, int] | None = None,
    profiled: bool = False,
) -> Report:
    """``firewall``: also the firewall part (fwbench.py), with (rules, set prefixes);
    ``profiled``: also where the time goes in the 64-byte cases (perf, profile.py)."""
    if profiled and not profile.available():
        raise UsageError("perf not found: install Debian's linux-perf to use --profile")
    return _run(frames, reps, table_routes, log, firewall, profiled)


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


def _run(
    frames: int,
    reps: int,
    table_routes: int,
    log: Callable[[str], None],
    firewall: tuple[int, int] | None = None,
    profiled: bool = False,
) -> Report:
    results: dict[tuple[str, str], list[Measurement]] = {}
    notes = [
        f"load: a closed loop of {IN_FLIGHT} frames injected once, sent back into the router by XDP programs on "
        "both hosts (XDP_TX) until the budget is spent; veth NAPI runs on the CPU that scheduled it, so each "
        "rate is one core's worth of router + loop-host work; Mpps = frames forwarded in the timed window "
        "(the middle 80% of the run) / its length",
        "every configuration has an XDP program on the router's interfaces (linux: xdp_pass)",
    ]
    cases = default_cases(table_routes)
    with Lab("xdprbench") as lab, Traffic() as traffic:
        bench = Bench(lab, traffic, frames, reps, log, profiled)
        try:
            bench.prepare(table_routes)
            log(f"measuring (median of {reps} runs each):")
            source, source_ns = bench.source([c for c in cases if not c.table])
            for case, mpps in source.items():
                log(f"  {case:<26} {WIRE:<10} {mpps:7.2f} Mpps  (the loop alone)")
            bench.run_cases([c for c in cases if not c.table], results)
            table_seconds = 0.0
            if table_routes:
                log(f"loading {table_routes} IPv4 routes into the router's FIB...")
                table_seconds = bench.load_table(table_routes)
                log(f"  loaded in {table_seconds:.1f} s")
                bench.run_cases([c for c in cases if c.table], results)
            fw_report = fwbench.run_firewall(bench, *firewall, log=log) if firewall else None
            log("program cost per verdict path (BPF_PROG_RUN, repeat)...")
            try:
                program_ns = bench.program_costs()
                forwarding_ns = bench.forwarding_costs([c for c in cases if c.name in CASES_64B])
            except BpfError as e:
                if not e.meaning:  # not a refusal by this kernel
                    raise
                program_ns, forwarding_ns = {}, {}
                notes.append(f"per-path costs not measured: {e}")
                log(f"  not measured: {e}")
            instructions = bench.instructions()
        finally:
            bench.close()

    summary = []
    for (case, config), runs in results.items():
        summary.append(
            Result(
                case,
                config,
                statistics.median(r.pps for r in runs) / 1e6,
                statistics.median(r.loss for r in runs),
                statistics.median(r.cpu_seconds / r.forwarded * 1e9 if r.forwarded else 0.0 for r in runs),
                runs[-1].prog_ns,
                [round(r.pps / 1e6, 3) for r in runs],
            )
        )
    by = {(r.case, r.config): r.mpps for r in summary}
    limited = sorted({c for (c, _), mpps in by.items() if c in source and mpps >= 0.9 * source[c]})
    if limited:
        notes.append(
            "WARNING: within 10% of the loop's own rate (through a wire), so these measure the source, "
            "not the router: " + ", ".join(limited)
        )
    ratios = {}
    for case in dict.fromkeys(r.case for r in summary):
        lin, xdp, ref = (by.get((case, c), 0.0) for c in CONFIGS)
        ratios[case] = {
            "xdprouter/linux": round(xdp / lin, 3) if lin else 0.0,
            "reference/linux": round(ref / lin, 3) if lin else 0.0,
            "xdprouter/reference": round(xdp / ref, 3) if ref else 0.0,
        }
    return Report(
        summary,
        ratios,
        program_ns,
        instructions,
        table_routes,
        round(table_seconds, 1),
        notes,
        fw_report,
        bench.profiles,
        forwarding_ns,
        {c: round(v, 3) for c, v in source.items()},
        round(source_ns, 1),
    )


def table(report: Report) -> str:
    lines = [f"{'case':<26} {'linux':>9} {'xdprouter':>10} {'reference':>10}   {'xdpr/linux':>10} {'xdpr/ref':>9}"]
    by = {(r.case, r.config): r for r in report.results}
    for case, ratio in report.ratios.items():
        cells = [f"{by[(case, c)].mpps:>{w}.2f}" for c, w in zip(CONFIGS, (9, 10, 10), strict=True)]
        lines.append(
            f"{case:<26} {' '.join(cells)}   {ratio['xdprouter/linux']:>9.2f}x {ratio['xdprouter/reference']:>8.2f}x"
        )
    lines.append("(Mpps forwarded, both ways; ratios of medians measured in this run)")
    if report.source_mpps:
        lines.append(
            "the loop alone, through a wire (no lookup, no rewrite): "
            + ", ".join(f"{c} {v:.2f}" for c, v in report.source_mpps.items())
            + f" Mpps; its hosts' program {report.source_ns:.0f} ns a frame"
        )
    lines.append("")
    lines.append("loss, CPU time (busy ns of all CPUs per forwarded frame) and the XDP program's own ns per frame:")
    for r in report.results:
        prog = f"  program {r.prog_ns_per_frame:5.0f} ns" if r.config != "linux" else ""
        lines.append(f"  {r.case:<26} {r.config:<10} loss {r.loss:6.2%}  cpu {r.cpu_ns_per_frame:6.0f} ns{prog}")
    for base_case, full_case, what in TABLE_PAIRS:
        if full_case not in report.ratios:
            continue
        lines.append(f"\n{report.table_routes} routes (loaded in {report.table_load_seconds} s), {what}:")
        for config in CONFIGS:
            base = by.get((base_case, config))
            full = by.get((full_case, config))
            if base and full:
                lines.append(
                    f"  {config:<10} {full.mpps:.2f} Mpps vs {base.mpps:.2f} under two covering routes: "
                    f"the table costs {(1 - full.mpps / base.mpps):.1%}"
                )
    lines.append(
        "\nthe program's cost on the forwarding path (BPF_PROG_RUN repeat, frames written afresh, ns per frame;"
        " not live, so every frame is looked up: no route hint):"
    )
    lines += [
        f"  {case:<32} " + "  ".join(f"{c} {ns:5.0f}" for c, ns in by.items())
        for case, by in report.forwarding_ns.items()
    ]
    lines.append("xdprouter's cost on paths that leave the frame as it is (BPF_PROG_RUN repeat, ns per frame):")
    lines += [f"  {name:<32} {ns:>5.0f}" for name, ns in report.program_ns.items()]
    lines.append("instructions (verified / translated):")
    lines += [f"  {name:<12} {v['verified']:>6} / {v['xlated']}" for name, v in report.instructions.items()]
    lines += [f"note: {n}" for n in report.notes]
    if report.profiles:
        lines += ["", profile_table(report)]
    if report.firewall:
        lines += ["", fwbench.table(report.firewall)]
    return "\n".join(lines)


def profile_table(report: Report) -> str:
    """Per case: each part's share of CPU 0's busy time, and about how many ns
    of the unprofiled run's CPU time per frame that is."""
    cpu = {(r.case, r.config): r.cpu_ns_per_frame for r in report.results}
    lines = ["where CPU 0's busy time goes (perf; share, and ≈ ns per forwarded frame):"]
    for case, by in report.profiles.items():
        configs = [c for c in CONFIGS if c in by]
        lines.append(f"  {case:<30}" + "".join(f"{c:>18}" for c in configs))
        for part in [*profile.PARTS, "other"]:
            if part == "idle":
                continue
            cells = "".join(
                f"{by[c].parts.get(part, 0.0):>9.1%} {by[c].parts.get(part, 0.0) * cpu.get((case, c), 0.0):>5.0f} ns"
                for c in configs
            )
            lines.append(f"    {part:<28}{cells}")
    return "\n".join(lines)


def plot(report: Report, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(report.ratios)
    by = {(r.case, r.config): r.mpps for r in report.results}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.27
    for i, config in enumerate(CONFIGS):
        xs = [x + (i - 1) * width for x in range(len(cases))]
        ax.bar(xs, [by.get((c, config), 0.0) for c in cases], width, label=config)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("Mpps forwarded")
    ax.set_title("Forwarding rate, one run: Linux vs xdprouter vs minimal reference")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_bench(
    json_out: bool,
    plot_path: str | None,
    frames: int,
    reps: int,
    table_routes: int,
    firewall: tuple[int, int] | None = None,
    firewall_only: bool = False,
    profiled: bool = False,
) -> int:
    """``firewall``: (rules, set prefixes) of the firewall part; ``firewall_only``: nothing else."""
    if firewall_only:
        rules, prefixes = firewall or (10_000, 1_000_000)
        fw = fwbench.run(frames=frames, reps=reps, rules=rules, set_prefixes=prefixes)
        print(json.dumps(fw.as_dict(), indent=2) if json_out else fwbench.table(fw))
        return 0
    report = run(frames=frames, reps=reps, table_routes=table_routes, firewall=firewall, profiled=profiled)
    if plot_path:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot(report, plot_path)
    print(json.dumps(report.as_dict(), indent=2) if json_out else table(report))
    return 0

"""`xdprouter bench`: forwarding rate of Linux, xdprouter and a minimal
reference fast path, measured in one run on one lab.

Load comes from h1 with BPF_PROG_RUN live frames (``traffic.Traffic``); an XDP
sink on h2 counts what arrives. For every case and configuration the result is
frames delivered per second, loss and CPU time; the ratios to Linux in the same
run are what the benchmark reports. Also: the program's own cost per verdict
path (BPF_PROG_RUN with repeat) and its instruction counts.
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
from pathlib import Path

from . import bpf, fwbench, profile
from .errors import UsageError
from .lab import Lab, netns, sh
from .router import Router
from .traffic import Traffic

CONFIGS = ("linux", "xdprouter", "reference")
# the 64-byte cases: profiled with --profile, and measured on the forwarding path with BPF_PROG_RUN
CASES_64B = ("ipv4-64B-1flow", "ipv4-64B-manyflows", "ipv6-64B-1flow", "ipv6-64B-manyflows")
ROUTES_V4 = "10.200.0.0/16"  # many-destination cases: routed via h2, one neighbour
ROUTES_V6 = "fd00:200::/64"
TABLE_BASE = 11 << 24  # the full-table case: /24s from 11.0.0.0 upwards
SPREAD_COVER = ("8.0.0.0/5", "16.0.0.0/4")  # 8.0.0.0-31.255.255.255: every /24 of an 800,000-route table
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
    sent: int
    received: int
    seconds: float
    cpu_seconds: float
    prog_ns: float  # the router's XDP program alone, ns per run (kernel.bpf_stats_enabled); 0 for linux

    @property
    def pps(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def loss(self) -> float:
        # the sink also counts the odd ND/ARP frame: never report negative loss
        return max(0.0, 1.0 - self.received / self.sent) if self.sent else 0.0


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

    def as_dict(self) -> dict[str, object]:
        return {
            "results": [asdict(r) for r in self.results],
            "ratios": self.ratios,
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


def build_frame(lab: Lab, case: Case, router_mac: str, host_mac: str) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    if case.ipv6:
        l3 = IPv6(src=lab.h1.ip6, dst="fd00:200::1" if case.dsts > 1 else lab.h2.ip6, hlim=64)
    elif case.spread:
        l3 = IP(src=lab.h1.ip4, dst=socket.inet_ntoa((TABLE_BASE + 1).to_bytes(4, "big")), ttl=64)
    else:
        l3 = IP(src=lab.h1.ip4, dst="10.200.0.1" if case.dsts > 1 else lab.h2.ip4, ttl=64)
    frame = Ether(dst=router_mac, src=host_mac) / l3 / UDP(sport=10000, dport=9)
    pad = max(0, case.size - len(frame))
    return bytes(frame / (b"\x00" * pad))


class Bench:
    def __init__(
        self, lab: Lab, traffic: Traffic, frames: int, reps: int, log: Callable[[str], None], profiling: bool = False
    ) -> None:
        self.lab = lab
        self.profiling = profiling
        self.profiles: dict[str, dict[str, profile.Profile]] = {}
        self.traffic = traffic
        self.frames = frames
        self.reps = reps
        self.log = log
        self.router_mac = lab.mac(lab.router, "veth1")
        self.host_mac = lab.mac(lab.h1.ns, "eth0")
        with netns(lab.h1.ns):
            self.h1_ifindex = socket.if_nametoindex(lab.h1.iface)
        with netns(lab.h2.ns):
            self.h2_ifindex = socket.if_nametoindex(lab.h2.iface)
        self._reference: bpf.Object | None = None
        self._config = "linux"

    def prepare(self) -> None:
        lab = self.lab
        lab.ip(lab.router, "route", "add", ROUTES_V4, "via", lab.h2.ip4)
        lab.ip(lab.router, "-6", "route", "add", ROUTES_V6, "via", lab.h2.ip6)
        for covering in SPREAD_COVER:  # the full table's range, before it is loaded
            lab.ip(lab.router, "route", "add", covering, "via", lab.h2.ip4)
        for flag, addr in (("-4", lab.h2.ip4), ("-6", lab.h2.ip6)):
            lab.run(lab.h1.ns, "ping", flag, "-c", "1", "-W", "2", addr)
        # the sink drops h2's ARP/ND answers too: a neighbour that aged out
        # could never be resolved again, so h2's entries are made permanent
        h2_mac = lab.mac(lab.h2.ns, lab.h2.iface)
        for addr in (lab.h2.ip4, lab.h2.ip6):
            lab.ip(
                lab.router, "neigh", "replace", addr, "lladdr", h2_mac, "dev", lab.router_ifaces[1], "nud", "permanent"
            )
        with netns(lab.h2.ns):
            self.traffic.attach_sink(self.h2_ifindex)

    def load_table(self, routes: int) -> float:
        lines = "".join(
            f"route add {socket.inet_ntoa((TABLE_BASE + (i << 8)).to_bytes(4, 'big'))}/24 via {self.lab.h2.ip4}\n"
            for i in range(routes)
        )
        with tempfile.NamedTemporaryFile("w", suffix=".routes") as fh:
            fh.write(lines)
            fh.flush()
            start = time.monotonic()
            sh("ip", "-n", self.lab.router, "-batch", fh.name, timeout=600)
            return time.monotonic() - start

    @contextlib.contextmanager
    def configured(self, config: str) -> Iterator[None]:
        lab = self.lab
        if config == "xdprouter":
            lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
        elif config == "reference":
            self._attach_reference()
        self._config = config
        try:
            yield
        finally:
            self._config = "linux"
            if config == "xdprouter":
                lab.xdprouter("detach", "--all")
            elif config == "reference":
                self._detach_reference()

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
        generator, the router and the sink alike, which is three programs a
        frame for the XDP configurations and two for Linux."""
        frame = build_frame(self.lab, case, self.router_mac, self.host_mac)
        frames = self.frames if case.size < 1000 else max(self.frames // 4, 1000)
        kw = {"flows": case.flows, "dsts": case.dsts, "dst_shift": case.dst_shift}
        with netns(self.lab.h1.ns):
            self.traffic.send(self.h1_ifindex, frame, min(frames, 20000), **kw)  # warm up: neighbours, caches
            time.sleep(0.05)
            self.traffic.reset()
            cpu0 = _cpu_busy_seconds()
            sent = self.traffic.send(self.h1_ifindex, frame, frames, **kw)
            time.sleep(0.05)  # what is still in a ring
            cpu1 = _cpu_busy_seconds()
        got = self.traffic.received()
        return Measurement(config, case.name, frames, got.packets, sent.seconds, cpu1 - cpu0, 0.0)

    def program_ns(self, case: Case, frames: int = 200_000) -> float:
        """The router program's own ns per frame under this load (bpf_stats on)."""
        if self._config == "linux":
            return 0.0
        frame = build_frame(self.lab, case, self.router_mac, self.host_mac)
        kw = {"flows": case.flows, "dsts": case.dsts, "dst_shift": case.dst_shift}
        with _bpf_stats(), netns(self.lab.h1.ns):
            ns0, cnt0 = self._prog_runtime()
            self.traffic.send(self.h1_ifindex, frame, frames, **kw)
            ns1, cnt1 = self._prog_runtime()
        return (ns1 - ns0) / (cnt1 - cnt0) if cnt1 > cnt0 else 0.0

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
        lab.ip(lab.router, "route", "add", "blackhole", "10.201.0.0/16")
        paths = {
            "pass ttl_expired": eth / IP(src=lab.h1.ip4, dst=lab.h2.ip4, ttl=1) / UDP() / (b"\0" * 18),
            "pass not_our_mac": Ether(dst="02:00:00:00:00:99") / IP(src=lab.h1.ip4, dst=lab.h2.ip4) / UDP(),
            "pass not_ip (ARP)": Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=lab.h1.gw4),
            "drop blackhole": eth / IP(src=lab.h1.ip4, dst="10.201.0.1") / UDP() / (b"\0" * 18),
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
                        frame = build_frame(lab, case, self.router_mac, self.host_mac)
                        kw = {"flows": case.flows, "dsts": case.dsts, "dst_shift": case.dst_shift}
                        ns = self._best_ns(prog, veth1, frame, repeat, kw) - self._best_ns(
                            None, veth1, frame, repeat, kw
                        )
                        out.setdefault(case.name, {})[config] = float(max(0, ns))
                finally:
                    prog.close()  # a no-op for the reference's borrowed fd
        return out

    def _best_ns(self, prog: bpf.Program | None, ifindex: int, frame: bytes, repeat: int, kw: dict[str, int]) -> int:
        return min(self.traffic.send_through(prog, ifindex, frame, repeat, **kw).ns_per_frame for _ in range(3))

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
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})  # one core generates; the NAPI work follows it
    try:
        return _run(frames, reps, table_routes, log, firewall, profiled)
    finally:
        os.sched_setaffinity(0, cpus)


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
        "frames are generated on CPU 0 by BPF_PROG_RUN live frames; veth NAPI runs on the sending CPU, "
        "so each rate is one core's worth of generator + router + sink work",
    ]
    cases = default_cases(table_routes)
    with Lab("xdprbench") as lab, Traffic() as traffic:
        bench = Bench(lab, traffic, frames, reps, log, profiled)
        bench.prepare()
        log(f"measuring (median of {reps} runs each):")
        bench.run_cases([c for c in cases if not c.table], results)
        table_seconds = 0.0
        if table_routes:
            log(f"loading {table_routes} IPv4 routes into the router's FIB...")
            table_seconds = bench.load_table(table_routes)
            log(f"  loaded in {table_seconds:.1f} s")
            bench.run_cases([c for c in cases if c.table], results)
        fw_report = fwbench.run_firewall(bench, *firewall, log=log) if firewall else None
        log("program cost per verdict path (BPF_PROG_RUN, repeat)...")
        program_ns = bench.program_costs()
        forwarding_ns = bench.forwarding_costs([c for c in cases if c.name in CASES_64B])
        instructions = bench.instructions()
        with netns(lab.h2.ns):
            traffic.detach_sink(bench.h2_ifindex)

    summary = []
    for (case, config), runs in results.items():
        summary.append(
            Result(
                case,
                config,
                statistics.median(r.pps for r in runs) / 1e6,
                statistics.median(r.loss for r in runs),
                statistics.median(r.cpu_seconds / r.received * 1e9 if r.received else 0.0 for r in runs),
                runs[-1].prog_ns,
                [round(r.pps / 1e6, 3) for r in runs],
            )
        )
    by = {(r.case, r.config): r.mpps for r in summary}
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
    )


def table(report: Report) -> str:
    lines = [f"{'case':<26} {'linux':>9} {'xdprouter':>10} {'reference':>10}   {'xdpr/linux':>10} {'xdpr/ref':>9}"]
    by = {(r.case, r.config): r for r in report.results}
    for case, ratio in report.ratios.items():
        cells = [f"{by[(case, c)].mpps:>{w}.2f}" for c, w in zip(CONFIGS, (9, 10, 10), strict=True)]
        lines.append(
            f"{case:<26} {' '.join(cells)}   {ratio['xdprouter/linux']:>9.2f}x {ratio['xdprouter/reference']:>8.2f}x"
        )
    lines.append("(Mpps delivered to h2; ratios of medians measured in this run)")
    lines.append("")
    lines.append("loss, CPU time (busy ns of all CPUs per delivered frame) and the XDP program's own ns per frame:")
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
    lines = ["where CPU 0's busy time goes (perf; share, and ≈ ns per delivered frame):"]
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
    ax.set_ylabel("Mpps delivered")
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

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

import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BpfError, UsageError
from . import Lab, fwbench, profile, progcost, xskbench
from .rig import CASES_64B, CONFIGS, TABLE_PAIRS, WIRE, Bench, Measurement, default_cases
from .traffic import IN_FLIGHT, Traffic


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
    xsk: xskbench.Result | None = None  # frames read in Python, xsk vs AF_PACKET (--xsk)

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
            "xsk": self.xsk.as_dict() if self.xsk else None,
            "profiles": {c: {k: p.as_dict() for k, p in by.items()} for c, by in self.profiles.items()},
        }


def run(
    frames: int = 1_000_000,
    reps: int = 3,
    table_routes: int = 800_000,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    firewall: tuple[int, int] | None = None,
    profiled: bool = False,
    xsk: float | None = None,
) -> Report:
    """``firewall``: also the firewall part (fwbench.py), with (rules, set prefixes);
    ``profiled``: also where the time goes in the 64-byte cases (perf, profile.py);
    ``xsk``: also frames read in Python (xskbench.py), runs of that many seconds."""
    if profiled and not profile.available():
        raise UsageError("perf not found: install Debian's linux-perf to use --profile")
    report = _run(frames, reps, table_routes, log, firewall, profiled)
    if xsk:
        log(f"xsk: frames read in Python under a flood, xdprouter.xsk vs AF_PACKET ({reps} runs of {xsk} s each)...")
        report.xsk = xskbench.run(seconds=xsk, reps=reps)
    return report


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
                program_ns = progcost.program_costs(bench)
                forwarding_ns = progcost.forwarding_costs(bench, [c for c in cases if c.name in CASES_64B])
            except BpfError as e:
                if not e.meaning:  # not a refusal by this kernel
                    raise
                program_ns, forwarding_ns = {}, {}
                notes.append(f"per-path costs not measured: {e}")
                log(f"  not measured: {e}")
            instructions = progcost.instructions(bench)
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
    if report.xsk:
        lines += ["", xskbench.table(report.xsk)]
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
    xsk: float | None = None,
    xsk_only: bool = False,
) -> int:
    """``firewall``: (rules, set prefixes) of the firewall part; ``xsk``:
    seconds a run of the xsk part; ``*_only``: that part, nothing else."""
    if firewall_only:
        rules, prefixes = firewall or (10_000, 1_000_000)
        fw = fwbench.run(frames=frames, reps=reps, rules=rules, set_prefixes=prefixes)
        print(json.dumps(fw.as_dict(), indent=2) if json_out else fwbench.table(fw))
        return 0
    if xsk_only:
        xr = xskbench.run(seconds=xsk or 3.0, reps=reps)
        print(json.dumps(xr.as_dict(), indent=2) if json_out else xskbench.table(xr))
        return 0
    report = run(frames=frames, reps=reps, table_routes=table_routes, firewall=firewall, profiled=profiled, xsk=xsk)
    if plot_path:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot(report, plot_path)
    print(json.dumps(report.as_dict(), indent=2) if json_out else table(report))
    return 0

"""`xdprouter bench --steer`: what a cpu steering rule gives the forwarding
on the ingress CPU.

The lab of ``bench.py`` (h1 — r — h2, the closed loop between h1 and h2
forwarding 64-byte IPv4 frames on CPU 0) with a third host, h3 — r (veth3),
whose flood generator (``feeds.Flood``, also on CPU 0: a veth's NAPI runs
on the CPU that scheduled it) sends 60-byte UDP frames to a service on the
router itself (10.3.0.1:5353, a socket nobody reads: the kernel's whole
receive path runs, then the full socket buffer drops the datagram). Three
configurations, interleaved in each repetition:

* ``alone``: the loop alone (no local traffic);
* ``local``: the loop while the flood's frames go up the kernel's stack on
  CPU 0 (xdprouter passes them: ``not_forwarded``);
* ``steered``: the same with ``steer add --action cpu --cpu 1 --dst
  10.3.0.1/32 --proto udp --dport 5353``: xdprouter hands them to CPU 1
  through the cpumap, where the kernel builds their skbs and receives them.

Each gives the loop's forwarding rate (its timed window), the local frames
xdprouter saw a second on veth3 meanwhile, and the datagrams the kernel's
UDP received a second (``/proc/net/snmp``: InDatagrams + RcvbufErrors).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from ..dataplane.abi import LoopStateSlot
from ..router import Router
from ..steer import Steering, SteerRule
from . import Host, Lab, netns, sh
from .feeds import Flood
from .rig import Bench, default_cases
from .traffic import IN_FLIGHT, Traffic

CONFIGS = ("alone", "local", "steered")
INGRESS_CPU, STEER_CPU = 0, 1
SERVICE = ("10.3.0.1", 5353)
QUIET = "/tmp/xdpr-quiet"  # while it exists, another timing run is under way: wait


@dataclass
class SteerRun:
    config: str
    forward_pps: float  # the loop's, in its timed window
    lost: int  # loop frames that never retired
    local_pps: float  # frames xdprouter saw on veth3 a second, over the loop's run
    udp_pps: float  # datagrams the kernel's UDP received a second (delivered or dropped at the full socket)


@dataclass
class SteerReport:
    frames: int
    runs: list[SteerRun] = field(default_factory=list)

    def median(self, config: str, what: str) -> float:
        return statistics.median(getattr(r, what) for r in self.runs if r.config == config)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"frames": self.frames, "runs": [asdict(r) for r in self.runs]}
        for c in CONFIGS:
            out[c] = {w: self.median(c, w) for w in ("forward_pps", "local_pps", "udp_pps")}
        return out


def table(r: SteerReport) -> str:
    lines = [
        f"cpumap steering: forwarding on CPU {INGRESS_CPU} (closed loop, ipv4 64B) while a flood to a "
        f"local UDP service shares the CPU; medians of {len(r.runs) // len(CONFIGS)} runs",
        f"{'config':<10} {'forwarded Mpps':>15} {'local frames Mpps':>18} {'UDP received Mpps':>18}",
    ]
    for c in CONFIGS:
        fwd, loc, udp = (r.median(c, w) / 1e6 for w in ("forward_pps", "local_pps", "udp_pps"))
        lines.append(f"{c:<10} {fwd:>15.3f} {loc:>18.3f} {udp:>18.3f}")
    base = r.median("local", "forward_pps")
    if base:
        lines.append(f"steered / local forwarding rate: {r.median('steered', 'forward_pps') / base:.2f}x")
    return "\n".join(lines)


def _udp_received(lab: Lab) -> int:
    out = lab.run(lab.router, "cat", "/proc/net/snmp").stdout.splitlines()
    names, values = [line.split()[1:] for line in out if line.startswith("Udp:")][:2]
    row = dict(zip(names, map(int, values), strict=True))
    return row["InDatagrams"] + row["RcvbufErrors"]


def _local_frames(lab: Lab) -> int:
    with netns(lab.router):
        c = Router().stats()["veth3"]
    return sum(x.packets for x in c.reasons.values())


def _add_h3(lab: Lab) -> Host:
    h3 = Host(f"{lab.prefix}-h3", "eth0", "10.3.0.2", "fd03::2", "10.3.0.1", "fd03::1")
    lab.namespaces.append(h3.ns)  # removed with the lab
    sh("ip", "netns", "add", h3.ns)
    lab.ip(h3.ns, "link", "set", "lo", "up")
    lab._wire(h3, "veth3")
    return h3


@contextlib.contextmanager
def _flooding(flood: Flood, frame: bytes) -> Iterator[None]:
    """The flood running on INGRESS_CPU for the block (a budget it never
    reaches, set to nothing at the end so its frames retire)."""
    done = threading.Event()

    def run() -> None:
        try:
            flood.run(frame, 1 << 40, in_flight=64, cpu=INGRESS_CPU)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.3)  # going
    try:
        yield
    finally:
        flood.traffic.start_budget(LoopStateSlot.FLOOD, IN_FLIGHT, IN_FLIGHT)  # budget 0: the frames retire
        done.wait(15)


def _wait_quiet(log: Callable[[str], None]) -> None:
    if os.path.exists(QUIET):
        log(f"waiting while {QUIET} exists")
    while os.path.exists(QUIET):
        time.sleep(1)


def run(frames: int = 2_000_000, reps: int = 3, log: Callable[[str], None] = print) -> SteerReport:
    if len(os.sched_getaffinity(0)) < 2 or STEER_CPU not in os.sched_getaffinity(0):
        raise SystemExit("the steering benchmark needs CPUs 0 and 1")
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    report = SteerReport(frames)
    with Lab(f"sb{os.getpid() % 10000}") as lab, Traffic() as t:
        h3 = _add_h3(lab)
        bench = Bench(lab, t, frames, reps, log)
        bench.prepare(0)
        lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces, "veth3")
        r3, m3 = lab.mac(lab.router, "veth3"), lab.mac(h3.ns, "eth0")
        lab.ip(lab.router, "neigh", "replace", h3.ip4, "lladdr", m3, "dev", "veth3", "nud", "permanent")
        frame = Ether(dst=r3, src=m3) / IP(src=h3.ip4, dst=SERVICE[0], ttl=64) / UDP(sport=10000, dport=SERVICE[1])
        local = bytes(frame / (b"\x00" * max(0, 60 - len(frame))))
        case = next(c for c in default_cases(0) if c.name == "ipv4-64B-1flow")
        with netns(lab.router):
            service = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        service.bind(SERVICE)
        try:
            with Flood(t, lab, h3) as flood:
                for rep in range(reps):
                    for config in CONFIGS:
                        _wait_quiet(log)
                        report.runs.append(_measure(lab, bench, flood, local, case, config))
                        log(f"rep {rep + 1}/{reps} {config}: {report.runs[-1].forward_pps / 1e6:.3f} Mpps forwarded")
        finally:
            service.close()
            lab.xdprouter("detach", "--all", check=False)
            bench.close()
    return report


def _measure(lab: Lab, bench: Bench, flood: Flood, local: bytes, case: object, config: str) -> SteerRun:
    rules = []
    if config == "steered":
        rules = [SteerRule.parse("cpu", cpu=STEER_CPU, dst=f"{SERVICE[0]}/32", proto="udp", dport=str(SERVICE[1]))]
    with netns(lab.router):
        Steering().replace(rules)
    with _flooding(flood, local) if config != "alone" else contextlib.nullcontext():
        f0, u0, t0 = _local_frames(lab), _udp_received(lab), time.monotonic()
        m = bench.measure("xdprouter", case)  # type: ignore[arg-type]
        f1, u1, t1 = _local_frames(lab), _udp_received(lab), time.monotonic()
    with netns(lab.router):
        Steering().flush()
    dt = t1 - t0
    return SteerRun(config, m.pps, m.lost, (f1 - f0) / dt, (u1 - u0) / dt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xdprouter.lab.steerbench", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=2_000_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = run(args.frames, args.reps, log=lambda s: print(s, file=sys.stderr))
    print(json.dumps(report.as_dict(), indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

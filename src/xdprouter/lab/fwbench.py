"""`xdprouter bench --firewall`: the firewall's part of the benchmark.

Two measurements, in the lab of ``bench.py`` (h1 — r — h2), each repeated
and interleaved so that a busy moment of the machine falls on every
configuration alike:

* drop rate of a flood from blocked sources (UDP, 60-byte frames, sources
  cycling through ``FLOOD_SRC``, sent one way by ``traffic.Flood`` on h1,
  which shares the core with the router) against one rule
  ``drop src FLOOD_SRC``: in xdprouter (XDP, before any skb), in nftables at
  the netdev ingress hook of the router's veth1 (the earliest nftables
  point) and in an inet prerouting chain at raw priority; and a bare
  ``XDP_DROP`` program, the least any drop can cost, whose rate is the
  flood's own. The rule's own counter (xdprouter's per-rule counter, nft's
  ``counter``) must see every frame sent; the rate is the flood's over its
  timed window. Since source and router share the core, each frame's time
  is the source's plus the router's: the router's own ns per dropped frame
  is the configuration's time less the bare program's.
* forwarding rate (the closed loop of ``bench.py``) with ``rules`` rules and
  a ``prefixes``-prefix set loaded (none of them matches the traffic; one
  rule references the set) against no rules, and how long loading them
  takes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..dataplane.abi import GenCount
from ..firewall import Firewall, Rule
from . import Lab, fwcost, netns
from .feeds import Flood
from .nft import nft_drop
from .rig import Bench, Case, default_cases
from .traffic import Traffic, Vary

FLOOD_SRC = "10.66.0.0/16"  # the blocked sources of the flood
SET_NAME = "feed"
BARE_DROP = "xdp-drop"  # a bare XDP_DROP program on veth1
DROP_CONFIGS = ("xdprouter", "nft-ingress", "nft-prerouting", BARE_DROP)
# Rules and set prefixes are drawn from 11.0.0.0-223.255.255.255 (and
# 2000::/3): nothing covers the lab's 10.0.0.0/8, so no rule matches the
# benchmark's traffic.
_V4_LO, _V4_HI = 11 << 24, 224 << 24


@dataclass
class DropRun:
    config: str
    sent: int
    dropped: int  # counted by the rule
    window_frames: int
    seconds: float  # the flood's timed window

    @property
    def pps(self) -> float:
        """Frames dropped a second (the flood's rate, scaled by the share the rule saw)."""
        return self.window_frames * (self.dropped / self.sent) / self.seconds if self.seconds and self.sent else 0.0


@dataclass
class FirewallReport:
    rules: int
    set_prefixes: int
    drop_mpps: dict[str, float]  # config -> median Mpps dropped by the rule
    drop_share: dict[str, float]  # config -> median share of the sent frames the rule dropped
    drop_runs: dict[str, list[float]]
    drop_net_ns: dict[str, float]  # config -> ns per dropped frame over the bare XDP_DROP's (the source's)
    forward_mpps: dict[str, float]  # "no rules" / "rules+set" -> median Mpps delivered to h2
    forward_loss: dict[str, float]
    forward_runs: dict[str, list[float]]
    program_ns: dict[str, float]  # the router program's ns per forwarded frame (bpf_stats on), same keys
    ratios: dict[str, float]
    rules_load_seconds: float  # median: Firewall.replace() of all the rules (compile, write, flip)
    set_load_seconds: float  # median: Firewall.load_set_file() of the set (parse, fill, swap in)
    load_runs: dict[str, list[float]] = field(default_factory=dict)
    path_ns: dict[str, float] = field(default_factory=dict)  # the program's ns a frame by path (fwcost)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# -- the rules and the set ---------------------------------------------------


def _v4(rnd: random.Random, lo_len: int, hi_len: int) -> str:
    plen = rnd.randint(lo_len, hi_len)
    addr = rnd.randrange(_V4_LO, _V4_HI) & ~((1 << (32 - plen)) - 1)
    return f"{socket.inet_ntoa(addr.to_bytes(4, 'big'))}/{plen}"


def _v6(rnd: random.Random) -> str:
    plen = rnd.randint(32, 64)
    addr = (0x2 << 125 | rnd.getrandbits(125)) & ~((1 << (128 - plen)) - 1)
    return str(ipaddress.IPv6Network((addr, plen)))


def random_prefixes(n: int, seed: int = 1) -> list[str]:
    """``n`` random IPv4 /24-/32 prefixes outside 10.0.0.0/8, one per line."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        plen = rnd.randint(24, 32)
        addr = rnd.randrange(_V4_LO, _V4_HI) & ~((1 << (32 - plen)) - 1)
        out.append(f"{socket.inet_ntoa(addr.to_bytes(4, 'big'))}/{plen}\n")
    return out


def benchmark_rules(n: int, set_name: str | None = SET_NAME, seed: int = 1) -> list[Rule]:
    """``n`` rules of the kinds operators write, none matching the lab's
    traffic; with ``set_name``, the first drops ``src @set_name``."""
    rnd = random.Random(seed)
    web = ("22", "25", "80", "443", "3389", "8080")
    rules = [Rule.parse(action="drop", src=f"@{set_name}")] if set_name else []
    for i in range(n - len(rules)):
        kind = i % 10
        if kind < 4:
            rule = Rule.parse(action="drop", src=_v4(rnd, 24, 32))
        elif kind < 6:
            rule = Rule.parse(action="drop", dst=_v4(rnd, 24, 32))
        elif kind == 6:
            rule = Rule.parse(action="allow", src=_v4(rnd, 16, 24), proto="tcp", dport=rnd.choice(web))
        elif kind == 7:
            lo = rnd.randrange(1024, 60000)
            rule = Rule.parse(action="drop", dst=_v4(rnd, 24, 32), proto="udp", dport=f"{lo}-{lo + rnd.randrange(100)}")
        elif kind == 8:
            rule = Rule.parse(action="drop", src=_v6(rnd))
        else:
            rule = Rule.parse(
                action="limit", dst=_v4(rnd, 24, 32), proto="icmp", pps=1000, block_after=500, block_seconds=60
            )
        rules.append(rule)
    return rules


# -- measurements --------------------------------------------------------------


def _flood_frame(bench: Bench) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    src = str(ipaddress.ip_network(FLOOD_SRC).network_address)
    frame = Ether(dst=bench.router_mac, src=bench.host_mac) / IP(src=src, dst=bench.lab.h2.ip4, ttl=64)
    frame = frame / UDP(sport=10000, dport=9)
    return bytes(frame / (b"\x00" * max(0, 60 - len(frame))))


def _flood(bench: Bench, flood: Flood, counter: Callable[[], int], config: str) -> DropRun:
    frame = _flood_frame(bench)
    vary = Vary(srcs=ipaddress.ip_network(FLOOD_SRC).num_addresses)
    flood.run(frame, max(bench.frames // 10, 4096), vary)  # warm up
    before = counter()
    run = flood.run(frame, bench.frames, vary)
    time.sleep(0.05)
    return DropRun(config, run.sent, counter() - before, run.window_frames, run.window_seconds)


def measure_drop(bench: Bench, flood: Flood, config: str) -> DropRun:
    """One flood from ``FLOOD_SRC`` against the drop rule in ``config``."""
    lab = bench.lab
    if config == "xdprouter":
        with bench.configured("xdprouter"):
            with netns(lab.router):
                Firewall().replace([Rule.parse(action="drop", src=FLOOD_SRC)], {})

            def counter() -> int:
                with netns(lab.router):
                    return Firewall().counters()[0].packets

            return _flood(bench, flood, counter, config)
    if config == BARE_DROP:
        bench.traffic.attach(lab.router, lab.router_ifaces[0], bench.traffic.drop)
        try:
            return _flood(bench, flood, lambda: bench.traffic.counted(GenCount.INJECT).packets, config)
        finally:
            bench.traffic.detach(lab.router, lab.router_ifaces[0])
    # nftables sees only what the kernel's stack receives: the veth gets xdp_pass, as Linux does in bench.py
    with bench.configured("linux"), nft_drop(lab, config, FLOOD_SRC) as counter:
        return _flood(bench, flood, counter, config)


def _fresh(rules: list[Rule]) -> list[Rule]:
    return [dataclasses.replace(r, id=0) for r in rules]


def _forwarding(
    bench: Bench,
    case: Case,
    ruleset: list[Rule],
    set_path: str | None,
    fwd: dict[str, list[tuple[float, float]]],
    prog: dict[str, float],
    loads: dict[str, list[float]],
) -> None:
    """The forwarding rate without rules and with the rules and the set,
    interleaved, ``bench.reps`` times; the loading times."""
    for rep in range(bench.reps):
        for state in fwd:
            with netns(bench.lab.router):
                fw = Firewall()
                if state == "no rules":
                    fw.flush()
                else:
                    if set_path:
                        _, seconds = fw.load_set_file(SET_NAME, set_path)
                        loads["set"].append(seconds)
                    start = time.perf_counter()
                    fw.replace(_fresh(ruleset), {})
                    loads["rules"].append(time.perf_counter() - start)
            m = bench.measure("xdprouter", case)
            fwd[state].append((m.pps, m.loss))
            if rep == bench.reps - 1:
                prog[state] = bench.program_ns(case)
    with netns(bench.lab.router):
        Firewall().flush()


def run_firewall(
    bench: Bench,
    rules: int = 10_000,
    set_prefixes: int = 1_000_000,
    log: Callable[[str], None] = lambda s: None,
) -> FirewallReport:
    """Both measurements on a prepared ``bench.Bench`` (routes in, the loop's hosts attached)."""
    notes = [
        f"drop: one rule `drop src {FLOOD_SRC}`; the flood's sources cycle through all of {FLOOD_SRC}; "
        "Mpps = the flood's rate over its timed window (the middle 80%) while the rule saw every frame; "
        "net ns = ns per frame less the bare XDP_DROP's (the flood's own, on the same core)",
        "nft-ingress: netdev family, ingress hook of veth1; nft-prerouting: inet family, prerouting hook, "
        "priority raw; no XDP program on the router in either",
        f"forwarding: {rules} rules (none matching the traffic, the first `drop src @{SET_NAME}`) and "
        f"a {set_prefixes}-prefix set of random IPv4 /24-/32 outside 10.0.0.0/8",
    ]
    configs = DROP_CONFIGS if shutil.which("nft") else ("xdprouter", BARE_DROP)
    if "nft-ingress" not in configs:
        notes.append("nft not installed: nftables not measured")
    drops: dict[str, list[DropRun]] = {c: [] for c in configs}
    log(f"firewall: drop rate of a flood from {FLOOD_SRC} (median of {bench.reps} runs each):")
    with Flood(bench.traffic, bench.lab, bench.lab.h1) as flood:
        for _ in range(bench.reps):
            for config in configs:
                drops[config].append(measure_drop(bench, flood, config))
    for config, runs in drops.items():
        med = statistics.median(r.pps for r in runs)
        log(f"  {config:<16} {med / 1e6:7.2f} Mpps dropped  ({runs[-1].dropped}/{runs[-1].sent} by the rule)")

    case = next(c for c in default_cases(0) if c.name == "ipv4-64B-manyflows")
    ruleset = benchmark_rules(rules, SET_NAME if set_prefixes else None)
    states = ("no rules", "rules+set")
    fwd: dict[str, list[tuple[float, float]]] = {s: [] for s in states}
    prog: dict[str, float] = {}
    loads: dict[str, list[float]] = {"rules": [], "set": []}
    log(f"firewall: forwarding ({case.name}) with {rules} rules and a {set_prefixes}-prefix set vs none:")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "set.txt")
        with open(path, "w") as fh:
            fh.writelines(random_prefixes(set_prefixes))
        with bench.configured("xdprouter"):
            _forwarding(bench, case, ruleset, path if set_prefixes else None, fwd, prog, loads)
        log("firewall: the program's ns a frame by path (BPF_PROG_RUN, warm caches):")
        paths = fwcost.classifier_costs(
            bench, _fresh(ruleset), lambda fw: fw.load_set_file(SET_NAME, path) if set_prefixes else None
        )
        for name, ns in paths.items():
            log(f"  {ns:6.0f}  {name}")
        if not paths:
            notes.append("BPF_PROG_RUN refused by this kernel: no per-path costs")
    for state in states:
        log(f"  {state:<16} {statistics.median(p for p, _ in fwd[state]) / 1e6:7.2f} Mpps forwarded")
    log(
        f"  loading: {rules} rules {statistics.median(loads['rules']):.2f} s, "
        f"{set_prefixes} prefixes {statistics.median(loads['set'] or [0.0]):.2f} s"
    )

    drop_mpps = {c: statistics.median(r.pps for r in runs) / 1e6 for c, runs in drops.items()}
    fwd_mpps = {s: statistics.median(p for p, _ in runs) / 1e6 for s, runs in fwd.items()}
    ratios = {
        f"xdprouter/{c}": round(drop_mpps["xdprouter"] / drop_mpps[c], 3) if drop_mpps[c] else 0.0
        for c in configs
        if c != "xdprouter"
    }
    # the flood and the router share the core: the bare XDP_DROP program's
    # time per frame is the flood's own, the rest of a configuration's is its
    net = {
        c: round(max(0.0, 1e3 / drop_mpps[c] - 1e3 / drop_mpps[BARE_DROP]), 1)
        for c in configs
        if drop_mpps[c] and drop_mpps[BARE_DROP]
    }
    for c in configs:
        if c not in (BARE_DROP, "xdprouter") and net.get("xdprouter") and net.get(c):
            ratios[f"net xdprouter/{c}"] = round(net[c] / net["xdprouter"], 3)
    limited = [c for c in configs if c != BARE_DROP and drop_mpps[c] >= 0.9 * drop_mpps[BARE_DROP]]
    if limited:
        notes.append(
            f"WARNING: {', '.join(limited)} dropped within 10% of the bare XDP_DROP program's rate, which is the "
            "flood's own: those rates measure the source; their net cost is below what this run can resolve"
        )
    ratios["rules+set/no rules"] = (
        round(fwd_mpps["rules+set"] / fwd_mpps["no rules"], 3) if fwd_mpps["no rules"] else 0.0
    )
    return FirewallReport(
        rules=rules,
        set_prefixes=set_prefixes,
        drop_mpps={c: round(v, 3) for c, v in drop_mpps.items()},
        drop_share={c: round(statistics.median(r.dropped / r.sent for r in runs), 4) for c, runs in drops.items()},
        drop_runs={c: [round(r.pps / 1e6, 3) for r in runs] for c, runs in drops.items()},
        drop_net_ns=net,
        forward_mpps={s: round(v, 3) for s, v in fwd_mpps.items()},
        forward_loss={s: round(statistics.median(loss for _, loss in runs), 4) for s, runs in fwd.items()},
        forward_runs={s: [round(p / 1e6, 3) for p, _ in runs] for s, runs in fwd.items()},
        program_ns={s: round(v, 1) for s, v in prog.items()},
        ratios=ratios,
        rules_load_seconds=round(statistics.median(loads["rules"]), 3),
        set_load_seconds=round(statistics.median(loads["set"] or [0.0]), 3),
        load_runs={k: [round(v, 3) for v in vs] for k, vs in loads.items()},
        path_ns=paths,
        notes=notes,
    )


def table(r: FirewallReport) -> str:
    lines = [f"firewall: drop rate of a flood from {FLOOD_SRC} against one drop rule (Mpps dropped by the rule)"]
    for config, mpps in r.drop_mpps.items():
        ratio = r.ratios.get(f"xdprouter/{config}")
        rel = f"   xdprouter/{config} {ratio:.2f}x" if ratio else ""
        net = r.ratios.get(f"net xdprouter/{config}")
        rel += f", net {net:.2f}x" if net else ""
        lines.append(
            f"  {config:<16} {mpps:7.2f}   ({r.drop_share[config]:.1%} of sent)"
            f"  net {r.drop_net_ns.get(config, 0.0):5.0f} ns a frame{rel}"
        )
    lines.append(f"firewall: forwarding with {r.rules} rules and a {r.set_prefixes}-prefix set (Mpps delivered)")
    for state, mpps in r.forward_mpps.items():
        lines.append(
            f"  {state:<16} {mpps:7.2f}   loss {r.forward_loss[state]:6.2%}  program {r.program_ns[state]:5.0f} ns"
        )
    lines.append(f"  rules+set/no rules {r.ratios['rules+set/no rules']:.3f}x")
    lines.append(
        f"firewall: loading {r.rules} rules {r.rules_load_seconds:.2f} s, "
        f"{r.set_prefixes} prefixes from a file {r.set_load_seconds:.2f} s (medians)"
    )
    if r.path_ns:
        lines.append("firewall: the program's ns a frame by path (BPF_PROG_RUN, warm caches)")
        lines += [f"  {ns:6.0f}  {name}" for name, ns in r.path_ns.items()]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def run(
    frames: int = 1_000_000,
    reps: int = 3,
    rules: int = 10_000,
    set_prefixes: int = 1_000_000,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> FirewallReport:
    """The firewall part alone, in a lab of its own (``xdprouter bench --firewall-only``)."""
    with Lab("xdprbench") as lab, Traffic() as traffic:
        bench = Bench(lab, traffic, frames, reps, log)
        try:
            bench.prepare()
            return run_firewall(bench, rules, set_prefixes, log)
        finally:
            bench.close()

"""Where CPU time goes during a benchmark run: `perf record` on one CPU,
summed by kernel symbol and by the part of the frame's path it belongs to.

The parts are named by well-known kernel functions (the FIB lookup, veth and
XDP redirect, the skb stack); a function that does not match any of them is
counted as "other". The split is by the function that was running, not by
its caller: a spin lock counts where it is listed (the page pool's return
ring takes almost all of them in this lab), not in the function that took it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import UsageError

# part -> symbol patterns (re.fullmatch), first match wins
PARTS: dict[str, tuple[str, ...]] = {
    "idle": (r"pv_native_safe_halt", r"default_idle.*", r"cpu_idle.*", r"do_idle", r"acpi_idle.*"),
    "program under test": (
        r"bpf_prog_\w+_xdp_router",
        r"bpf_prog_\w+_xdp_reference",
        r"bpf_prog_\w+_fib_lookup_hinted",
    ),
    "clock reads": (r"read_tsc", r"ktime_get\w*", r"bpf_ktime_get\w*", r"kvm_clock_\w+", r"pvclock_\w+"),
    "load source (loop hosts)": (
        r"bpf_prog_\w+_xdp_(loop_a|loop_b|inject|sink|pass|wire|drop|gen_chain)",
        r"bpf_dispatcher_xdp_func",
    ),
    "FIB and neighbour lookup": (
        r"fib\w*",
        r"fib6\w*",
        r"bpf_(xdp|ipv4|ipv6)_fib_lookup",
        r"ip_mtu_from_fib_result",
        r"ip6_mtu_from_fib6",
        r"find_exception",
        r"_*rt6_\w+",
        r"__find_rr_leaf",
        r"__ipv6_addr_type",
        r"ip_route_input\w*",
        r"ip_route_use_hint",
        r"ip6_route_input\w*",
        r"ip6_pol_route\w*",
        r"__fib_validate_source",
        r"dev_get_by_index_rcu",
        r"map_id_range_down",
        r"make_kuid",
        r"_*neigh\w*",
        r"__ipv[46]_neigh_lookup\w*",
    ),
    "page pool (frames going back)": (
        r"page_pool_\w+",
        r"_raw_spin_(un)?lock\w*",
        r"__raw_callee_save___pv_queued_spin_unlock",
        r"xdp_return_frame\w*",
        r"__xdp_return",
        r"napi_pp_put_page",
    ),
    "veth and XDP redirect": (
        r"veth_\w+",
        r"xdp_do_\w+",
        r"bq_\w+",
        r"dev_map_\w+",
        r"dev_hash_map_\w+",
        r"dev_xdp_enqueue",
        r"__dev_flush",
        r"_*napi_(poll|schedule\w*|complete\w*)",
        r"net_rx_action",
        r"handle_softirqs",
        r"__local_bh_enable_ip",
        r"do_softirq\w*",
    ),
    "Linux stack (skbs)": (
        r"_*ip(v6|6)?_\w+",
        r"netdev_\w+",
        r"csum\w*",
        r"put_cpu_partial",
        r"\w*skb\w*",
        r"_*netif_\w+",
        r"\w*gro\w*",
        r"_*dev_queue_xmit\w*",
        r"dev_hard_start_xmit",
        r"validate_xmit\w*",
        r"eth_type_trans",
        r"passthru_features_check",
        r"\w*kmem_cache\w*",
        r"\w*slab\w*",
        r"udp\w*",
        r"nf_\w+",
        r"__list_(add|del)\w*",
        r"_*build_skb\w*",
        r"__xdp_build_skb_from_frame",
    ),
}
_COMPILED = {part: re.compile("|".join(f"(?:{p})" for p in pats)) for part, pats in PARTS.items()}
_LINE = re.compile(r"\s*([\d.]+)%\s+\[[k.]\]\s+(\S+)")


def part_of(symbol: str) -> str:
    name = symbol.split(".", 1)[0]  # foo.constprop.0, foo.isra.0: the compiler's copies of foo
    for part, pattern in _COMPILED.items():
        if pattern.fullmatch(name):
            return part
    return "other"


@dataclass
class Profile:
    """Shares of the busy samples of one CPU (idle samples left out)."""

    samples_busy_share: float  # of all samples, how many were not idle
    parts: dict[str, float] = field(default_factory=dict)  # part -> share of busy samples
    top: list[tuple[str, float]] = field(default_factory=list)  # symbol -> share of busy samples

    def as_dict(self) -> dict[str, object]:
        return {"busy": self.samples_busy_share, "parts": self.parts, "top": self.top}


def summarize(report_text: str, top: int = 12) -> Profile:
    """Turn `perf report --stdio --sort sym -g none --no-children` into a Profile."""
    symbols: dict[str, float] = {}
    for line in report_text.splitlines():
        m = _LINE.match(line)
        if m:
            symbols[m.group(2)] = symbols.get(m.group(2), 0.0) + float(m.group(1))
    idle = sum(v for s, v in symbols.items() if part_of(s) == "idle")
    busy = sum(symbols.values()) - idle
    if busy <= 0:
        return Profile(0.0)
    parts: dict[str, float] = {p: 0.0 for p in PARTS if p != "idle"} | {"other": 0.0}
    for sym, pct in symbols.items():
        part = part_of(sym)
        if part != "idle":
            parts[part] += pct / busy
    ranked = sorted(((s, v / busy) for s, v in symbols.items() if part_of(s) != "idle"), key=lambda x: -x[1])
    return Profile(round(busy / 100, 3), {k: round(v, 4) for k, v in parts.items()}, ranked[:top])


def available() -> bool:
    return shutil.which("perf") is not None


@contextlib.contextmanager
def recording(cpu: int, frequency: int = 4999) -> Iterator[list[Profile]]:
    """Sample ``cpu`` with perf while the block runs; the Profile is appended
    to the yielded list when the block ends."""
    if not available():
        raise UsageError("perf not found: install Debian's linux-perf to profile")
    out: list[Profile] = []
    with tempfile.TemporaryDirectory(prefix="xdprouter-perf-") as tmp:
        data = os.path.join(tmp, "perf.data")
        proc = subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(frequency), "-C", str(cpu), "-o", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # perf is sampling before the block starts
        try:
            yield out
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        if proc.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"perf record failed ({proc.returncode}): {err.strip()}")
        report = subprocess.run(
            ["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "sym", "-g", "none"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if report.returncode != 0:
            raise RuntimeError(f"perf report failed: {report.stderr.strip()}")
        out.append(summarize(report.stdout))

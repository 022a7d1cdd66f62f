"""The firewall's cost per frame by part of the classifier, by BPF_PROG_RUN.

Each path is one frame run again and again (``repeat``) through the attached
program, best of a few runs, with a rule set loaded or not: the difference
between two paths is what the part between them costs, with warm caches (a
live flood pays more: the frame's own cache misses, other work on the CPU;
see ``fwbench``). The frames are left as they are by every path measured
(dropped, or handed to the kernel at TTL 1), so each repetition sees the
same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import BpfError
from ..firewall import Firewall, Rule
from ..router import Router
from . import netns
from .rig import Bench

REPEAT = 200_000
BEST_OF = 7
DROP_RULE = "10.66.0.0/16"  # the flood's rule (fwbench.FLOOD_SRC)


def _frames(bench: Bench) -> dict[str, bytes]:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    eth = Ether(dst=bench.router_mac, src=bench.host_mac)
    udp = UDP(sport=10000, dport=9) / (b"\0" * 18)
    lab = bench.lab
    return {
        "outside": bytes(eth / IP(src=lab.h1.ip4, dst=lab.h2.ip4, ttl=1) / udp),  # no rule names it
        "blocked": bytes(eth / IP(src="10.66.3.4", dst=lab.h2.ip4) / udp),
        "malformed": bytes(eth / IP(src=lab.h1.ip4, dst=lab.h2.ip4, version=5) / udp),
    }


def classifier_costs(bench: Bench, rules: list[Rule], set_load: Callable[[Firewall], object]) -> dict[str, float]:
    """ns per frame of the program on each path, in the xdprouter
    configuration; ``set_load`` loads the rules' set. Empty when the kernel
    refuses BPF_PROG_RUN."""
    frames = _frames(bench)
    drop = Rule.parse(action="drop", src=DROP_RULE)
    out: dict[str, float] = {}
    with bench.configured("xdprouter"), netns(bench.lab.router):
        fw = Firewall()

        def best(frame: str) -> float:
            return float(
                min(Router().test_run(frames[frame], "veth1", repeat=REPEAT).duration_ns for _ in range(BEST_OF))
            )

        try:
            fw.flush()
            out["before the firewall (a malformed frame)"] = best("malformed")
            out["no rules, TTL 1 (handed to the kernel)"] = best("outside")
            fw.replace([drop], {})
            out["1 rule, a frame outside it (pre-filter)"] = best("outside")
            out["1 rule, a frame it drops"] = best("blocked")
            set_load(fw)
            fw.replace(rules, {})
            out[f"{len(rules)} rules + set, a frame no rule names (pre-filter)"] = best("outside")
            fw.replace([drop, *rules], {})
            out[f"{len(rules) + 1} rules + set, a frame the first drops (every field looked up)"] = best("blocked")
        except BpfError as e:
            if not e.meaning:
                raise
            return {}
        finally:
            fw.flush()
    bare = (bench.traffic.drop.test_run(frames["blocked"], repeat=REPEAT).duration_ns for _ in range(BEST_OF))
    out["bare XDP_DROP program"] = float(min(bare))
    return out

"""The firewall benchmark's machinery on a small scale (`xdprouter bench
--firewall-only`): every configuration drops the whole flood with its rule,
forwarding delivers with and without the rules, and the report has every
part. No rate is asserted (rates belong in `make bench`'s output, as ratios).
Also the injector's varying sources, which the flood relies on."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from xdprouter.firewall import Firewall, Rule
from xdprouter.lab import Lab, fwbench, netns
from xdprouter.lab.feeds import Injector
from xdprouter.lab.traffic import Traffic, Vary


def test_firewall_bench_runs_every_configuration() -> None:
    r = fwbench.run(frames=20_000, reps=1, rules=300, set_prefixes=3_000, log=lambda s: None)
    assert set(r.drop_mpps) == set(fwbench.DROP_CONFIGS)
    for config in fwbench.DROP_CONFIGS:
        assert r.drop_share[config] == 1.0, f"{config}: the rule dropped {r.drop_share[config]:.2%} of the flood"
        assert r.drop_mpps[config] > 0
    assert set(r.forward_mpps) == {"no rules", "rules+set"}
    assert all(loss < 0.01 for loss in r.forward_loss.values()), r.forward_loss
    assert all(ns > 0 for ns in r.program_ns.values())
    assert {"xdprouter/nft-ingress", "xdprouter/nft-prerouting", "xdprouter/xdp-drop", "rules+set/no rules"} <= set(
        r.ratios
    )
    assert set(r.drop_net_ns) == set(fwbench.DROP_CONFIGS) and r.drop_net_ns[fwbench.BARE_DROP] == 0.0
    assert r.rules_load_seconds > 0 and r.set_load_seconds > 0
    json.dumps(r.as_dict())
    assert "rules+set/no rules" in fwbench.table(r)
    # the per-path costs: every path measured, the firewall's paths above the program's floor
    assert len(r.path_ns) == 7 and all(ns > 0 for ns in r.path_ns.values()), r.path_ns
    floor = r.path_ns["before the firewall (a malformed frame)"]
    assert r.path_ns["1 rule, a frame it drops"] > floor > r.path_ns["bare XDP_DROP program"]


def test_benchmark_rules_never_match_the_lab_traffic() -> None:
    rules = fwbench.benchmark_rules(2_000)
    assert len(rules) == 2_000 and rules[0].src == f"@{fwbench.SET_NAME}"
    lab_net = ipaddress.ip_network("10.0.0.0/8")
    for r in rules[1:]:
        nets = [ipaddress.ip_network(v) for v in (r.src, r.dst) if v]
        assert nets and not any(n.version == 4 and n.overlaps(lab_net) for n in nets), r
    for line in fwbench.random_prefixes(5_000):
        assert not ipaddress.ip_network(line.strip()).overlaps(lab_net)


def test_cli_firewall_only_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xdprouter.cli", "bench", "--firewall-only", "--json", "--frames", "20000"]
        + ["--reps", "1", "--fw-rules", "100", "--fw-prefixes", "1000"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(out.stdout)
    assert data["rules"] == 100 and data["set_prefixes"] == 1000
    assert data["drop_share"]["xdprouter"] == 1.0


def test_generator_cycles_through_sources(loaded_lab: tuple[Lab, Traffic]) -> None:
    lab, traffic = loaded_lab
    with netns(lab.router):
        Firewall().replace([Rule.parse(action="drop", src="10.66.0.0/24")], {})
    frame = Ether(dst=lab.mac(lab.router, "veth1"), src=lab.mac(lab.h1.ns, "eth0"))
    frame = frame / IP(src="10.66.0.0", dst=lab.h2.ip4) / UDP(sport=10000, dport=9) / (b"\0" * 18)
    with Injector(traffic, lab, lab.h1) as injector:
        injector.send(bytes(frame), 10_240, Vary(srcs=512))  # 10.66.0.0-10.66.1.255, half in the rule
    deadline = time.monotonic() + 5
    while True:
        with netns(lab.router):
            (rule,) = Firewall().counters()
        if rule.packets >= 5_120 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    time.sleep(0.05)
    with netns(lab.router):
        (rule,) = Firewall().counters()
    assert rule.packets == 5_120

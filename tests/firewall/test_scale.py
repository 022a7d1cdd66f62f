"""The firewall at the scale operators use it: 10,000 rules loaded and
classified correctly (first match among many, spot-checked by BPF_PROG_RUN of
the real program, and the matching rule's own counter), and a 1,000,000-prefix
set loaded from a file and matched."""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from xdprouter.dataplane.abi import Reason
from xdprouter.firewall import Firewall, Rule

from .conftest import FwLab

H1, H2 = "10.1.0.2", "10.2.0.2"
N_RULES = 10_000
N_PREFIXES = 1_000_000
BROAD_ALLOW = N_RULES - 2  # allow src 100.0.0.0/8: behind every rule of kind 0
LAST = N_RULES - 1  # drop dst 192.0.2.0/24: the only rule for that destination
SHADOWED = range(500, N_RULES - 2, 1000)  # drop src 104.0.0.0/8, all alike: the first wins


def _net(first: int, i: int) -> str:
    return f"{first}.{i >> 8}.{i & 255}.0/24"


def _scale_rules() -> list[Rule]:
    """Four interleaved kinds, every one naming other addresses, so that each
    kind's wildcards cover the others' positions."""
    rules = []
    for i in range(N_RULES):
        if i == BROAD_ALLOW:
            rule = Rule.parse(action="allow", src="100.0.0.0/8")
        elif i == LAST:
            rule = Rule.parse(action="drop", dst="192.0.2.0/24")
        elif i in SHADOWED:
            rule = Rule.parse(action="drop", src="104.0.0.0/8")
        elif i % 4 == 0:
            rule = Rule.parse(action="drop", src=_net(100, i))
        elif i % 4 == 1:
            rule = Rule.parse(action="allow", dst=_net(101, i), proto="udp", dport=str(1000 + i % 1000))
        elif i % 4 == 2:
            rule = Rule.parse(action="drop", src=_net(102, i), dport="2000-2999")
        else:
            rule = Rule.parse(action="drop", src=f"fd10:{i}::/32")
        rules.append(rule)
    return rules


def _probe(i: int) -> tuple[Any, Any, str]:
    """A frame that rule i (of a plain kind) matches, and its verdict."""
    if i % 4 == 0:
        return IP(src=_net(100, i).replace(".0/24", ".9"), dst=H2), UDP(dport=53), "drop"
    if i % 4 == 1:
        return IP(src=H1, dst=_net(101, i).replace(".0/24", ".9")), UDP(dport=1000 + i % 1000), "allow"
    if i % 4 == 2:
        return IP(src=_net(102, i).replace(".0/24", ".9"), dst=H2), UDP(dport=2500), "drop"
    return IPv6(src=f"fd10:{i}::9", dst="fd02::2"), UDP(dport=53), "drop"


def test_ten_thousand_rules_load_and_classify_first_match(fl: FwLab) -> None:
    rules = _scale_rules()
    start = time.perf_counter()
    fl.fw(lambda f: f.replace(rules, {}))
    seconds = time.perf_counter() - start
    print(f"{N_RULES} rules compiled and loaded in {seconds:.2f} s")
    assert seconds < 10, f"loading {N_RULES} rules took {seconds:.1f} s"
    assert len(fl.fw(lambda f: f.rules())) == N_RULES  # type: ignore[arg-type]

    rnd = random.Random(3)
    plain = [i for i in range(N_RULES - 2) if i not in SHADOWED]
    expect: dict[int, int] = {}  # position -> frames it must have counted
    for i in sorted(rnd.sample(plain, 60)) + [0, 1, 2, 3, N_RULES - 3]:
        l3, l4, action = _probe(i)
        r = fl.run(fl.frame(l3, l4))
        if action == "drop":
            assert r.reason == Reason.FW_DROP, f"rule {i}: {r.reason}"
        else:
            assert r.reason != Reason.FW_DROP, f"rule {i}: dropped"
        expect[i] = expect.get(i, 0) + 1
    # fields are ANDed: the right source with a port outside the range
    r = fl.run(fl.frame(IP(src=_net(102, 2).replace(".0/24", ".9"), dst=H2), UDP(dport=3000)))
    assert r.reason == Reason.FORWARD
    # a drop rule before the broad allow wins; a source only the allow names passes
    assert fl.run(fl.frame(IP(src="100.200.0.1", dst=H2))).reason == Reason.FORWARD
    expect[BROAD_ALLOW] = 1
    # first match among ten identical rules: the first one counts
    assert fl.run(fl.frame(IP(src="104.1.2.3", dst=H2))).reason == Reason.FW_DROP
    expect[SHADOWED[0]] = 1
    # the very last position
    assert fl.run(fl.frame(IP(src=H1, dst="192.0.2.1"))).reason == Reason.FW_DROP
    expect[LAST] = 1
    # traffic that no rule names is forwarded
    for _ in range(3):
        assert fl.run(fl.frame()).reason == Reason.FORWARD
        assert fl.run(fl.frame(v6=True)).reason == Reason.FORWARD

    counted = {c.position: c.packets for c in fl.fw(lambda f: f.counters()) if c.packets}  # type: ignore[attr-defined]
    assert counted == expect


@pytest.fixture
def fls(fl: FwLab) -> Iterator[FwLab]:
    """``fl``, and the set "feed" deleted afterwards (the rules are flushed first)."""
    try:
        yield fl
    finally:

        def clean(f: Firewall) -> None:
            f.flush()
            if "feed" in {s.name for s in f.sets()}:
                f.delete_set("feed")

        fl.fw(clean)


def _random_set(n: int, seed: int) -> list[tuple[int, int]]:
    """n distinct (network, length) /24-/32 prefixes inside 11.0.0.0-99.255.255.255."""
    rnd = random.Random(seed)
    out: dict[tuple[int, int], None] = {}
    while len(out) < n:
        plen = rnd.randint(24, 32)
        out[(rnd.randrange(11 << 24, 100 << 24) & ~((1 << (32 - plen)) - 1), plen)] = None
    return list(out)


def test_million_prefix_set_loads_from_a_file_and_matches(fls: FwLab, tmp_path: Any) -> None:
    fl = fls
    prefixes = _random_set(N_PREFIXES, 5)
    path = tmp_path / "feed.txt"
    path.write_text("".join(f"{socket.inet_ntoa(a.to_bytes(4, 'big'))}/{plen}\n" for a, plen in prefixes))
    n, seconds = fl.fw(lambda f: f.load_set_file("feed", path))  # type: ignore[misc]
    print(f"{n} prefixes loaded from a file in {seconds:.2f} s")
    assert n == N_PREFIXES
    assert seconds < 20
    assert ("feed", N_PREFIXES) in [(s.name, s.prefixes) for s in fl.fw(lambda f: f.sets())]  # type: ignore[attr-defined]
    fl.fw(lambda f: f.add(Rule.parse(action="drop", src="@feed")))

    rnd = random.Random(6)
    for addr, plen in rnd.sample(prefixes, 40):
        net = ipaddress.IPv4Network((addr, plen))
        for host in (net.network_address, net.broadcast_address):
            assert fl.run(fl.frame(IP(src=str(host), dst=H2))).reason == Reason.FW_DROP, f"{host} in {net}"
    for host in ("100.0.0.1", "10.1.0.2", "223.1.2.3", "1.2.3.4"):
        assert fl.run(fl.frame(IP(src=host, dst=H2))).reason != Reason.FW_DROP, host

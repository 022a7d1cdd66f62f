"""The classifier against a plain first-match reference, on random rule sets
and frames built around them: the pre-filter (coarse and fine presence
bits, set presence, ports, protocols), fields no rule names, sets and drop
policies must never change a verdict, only its cost."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from xdprouter.dataplane.abi import PORT_PROTOS, Reason
from xdprouter.firewall import Rule
from xdprouter.firewall.prefilter import v6_bit
from xdprouter.firewall.rules import parse_prefix_lines
from xdprouter.lab import netns
from xdprouter.router import Router

from .conftest import FwLab

Net = ipaddress.IPv4Network | ipaddress.IPv6Network

V4 = ["10.66.0.0/16", "10.66.5.0/24", "10.66.5.128/25", "10.66.5.7/32", "172.16.0.0/12", "10.2.0.0/24", "0.0.0.0/0"]
V6 = ["fd01::/64", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::5/128", "2001:db8:1:2::/63", "fd00::/8"]
SETS = {
    "near": ["10.66.5.0/24", "172.16.3.0/28", "2001:db8:1::/48", "10.66.7.64/26"],
    "far": ["192.0.2.0/25", "10.66.9.9/32", "10.70.0.0/15", "10.80.0.0/20", "2001:db8:1:2::7/128"],
}
PORTS = [(53, 53), (80, 80), (1000, 2000), (40000, 40100)]
PROTOS = {4: [6, 17, 1, 47], 6: [6, 17, 58, 47]}
ICMP_PROTO = {4: 1, 6: 58}


@dataclass
class Probe:
    family: int
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    proto: int
    sport: int
    dport: int
    icmp_type: int
    iface: str


def _in(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, value: str) -> bool:
    if value.startswith("@"):
        return any(addr in n for n in map(ipaddress.ip_network, SETS[value[1:]]) if n.version == addr.version)
    net = ipaddress.ip_network(value)
    return net.version == addr.version and addr in net


def matches(r: Rule, f: Probe) -> bool:
    """A rule's meaning, as docs/firewall.md states it."""
    if r.family not in (0, f.family) or (r.iface and r.iface != f.iface):
        return False
    if r.proto is not None and r.proto != f.proto:
        return False
    if (r.src and not _in(f.src, r.src)) or (r.dst and not _in(f.dst, r.dst)):
        return False
    has_ports = f.proto in PORT_PROTOS
    for rng, port in ((r.sport, f.sport), (r.dport, f.dport)):
        if rng and not (has_ports and rng[0] <= port <= rng[1]):
            return False
    return r.icmp_type is None or (f.proto == ICMP_PROTO[f.family] and r.icmp_type == f.icmp_type)


def expected(rules: list[Rule], policies: dict[str, str], f: Probe) -> int | None:
    """The position of the first match, len(rules) for a drop policy, None to go on."""
    for pos, r in enumerate(rules):
        if matches(r, f):
            return pos if r.action == "drop" else None
    return len(rules) if policies.get(f.iface) == "drop" else None


def random_rule(rnd: random.Random, catch_all: bool) -> Rule:
    """Without ``catch_all``, no rule the pre-filter must let every frame
    through for (one naming nothing, or an IPv6 prefix shorter than /16):
    then each anchor kind alone decides which frames are classified."""
    while True:
        rule = _random_rule(rnd)
        if (
            catch_all
            or (rule.src, rule.dst, rule.proto) != (None, None, None)
            and "fd00::/8" not in (rule.src, rule.dst)
        ):
            return rule


def _random_rule(rnd: random.Random) -> Rule:
    fam = rnd.choice((4, 6))
    given: dict[str, object] = {"action": rnd.choice(("drop", "drop", "allow"))}
    pool = V4 if fam == 4 else V6
    for attr in ("src", "dst"):
        roll = rnd.random()
        if roll < 0.35:
            given[attr] = rnd.choice(pool)
        elif roll < 0.45:
            given[attr] = "@" + rnd.choice(tuple(SETS))
    roll = rnd.random()
    if roll < 0.3:
        given["proto"] = rnd.choice((6, 17))
        for attr in ("sport", "dport"):
            if rnd.random() < 0.5:
                lo, hi = rnd.choice(PORTS)
                given[attr] = f"{lo}-{hi}"
    elif roll < 0.45:
        given["proto"] = ICMP_PROTO[fam]
        if rnd.random() < 0.6:
            given["icmp_type"] = rnd.choice((0, 8, 3))
    elif roll < 0.55:
        given["proto"] = 47
    if rnd.random() < 0.15:
        given["iface"] = rnd.choice(("veth1", "veth2"))
    return Rule.parse(**given)


def _host(rnd: random.Random, fam: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address in or next to one of the prefixes and sets rules take."""
    nets = [ipaddress.ip_network(p) for p in (V4 if fam == 4 else V6) + sum(SETS.values(), [])]
    net = rnd.choice([n for n in nets if n.version == fam])
    span = min(net.num_addresses, 1 << 20)
    base = int(net.network_address) + rnd.randrange(span)
    if rnd.random() < 0.3:  # just outside
        base = int(net.network_address) + net.num_addresses + rnd.randrange(4) if rnd.random() < 0.5 else base ^ 0x100
    top = (1 << (32 if fam == 4 else 128)) - 1
    return ipaddress.ip_address(base & top) if fam == 4 else ipaddress.IPv6Address(base & top)


def random_probe(rnd: random.Random) -> Probe:
    fam = rnd.choice((4, 6))
    lo, hi = rnd.choice(PORTS)
    return Probe(
        family=fam,
        src=_host(rnd, fam),
        dst=_host(rnd, fam),
        proto=rnd.choice(PROTOS[fam]),
        sport=rnd.choice((lo, hi, rnd.randrange(65536))),
        dport=rnd.choice((lo, hi + 1, rnd.randrange(65536))),
        icmp_type=rnd.choice((0, 8, 3, 11)),
        iface=rnd.choice(("veth1", "veth1", "veth2")),
    )


def frame(macs: dict[str, str], f: Probe) -> bytes:
    l3: Packet = (
        IP(src=str(f.src), dst=str(f.dst), proto=f.proto)
        if f.family == 4
        else IPv6(src=str(f.src), dst=str(f.dst), nh=f.proto)
    )
    l4: Packet
    if f.proto == 6:
        l4 = TCP(sport=f.sport, dport=f.dport)
    elif f.proto == 17:
        l4 = UDP(sport=f.sport, dport=f.dport)
    elif f.proto == 1:
        l4 = ICMP(type=f.icmp_type)
    else:
        l4 = Raw(bytes([f.icmp_type, 0, 0, 0]))
    return bytes(Ether(dst=macs[f.iface], src="02:00:00:00:00:11") / l3 / l4 / (b"x" * 32))


@pytest.mark.parametrize("seed", range(8))
def test_classifier_agrees_with_first_match(fl: FwLab, seed: int) -> None:
    rnd = random.Random(seed)
    for name, prefixes in SETS.items():
        fl.fw(lambda f, n=name, p=prefixes: f.load_set(n, parse_prefix_lines(p)))
    rules = [random_rule(rnd, catch_all=seed < 4) for _ in range(rnd.choice((3, 12, 60)))]
    policies = {"veth2": "drop"} if seed % 2 else {}
    fl.fw(lambda f: f.replace(rules, policies))
    probes = [random_probe(rnd) for _ in range(250)]
    macs = {name: fl.lab.mac(fl.lab.router, name) for name in fl.lab.router_ifaces}
    wrong = []
    with netns(fl.lab.router), Router().test_runner() as run:
        for f in probes:
            want = expected(rules, policies, f)
            got = run(frame(macs, f), f.iface).reason
            if want is None:
                ok = got not in (Reason.FW_DROP, Reason.FW_POLICY_DROP)
            else:
                ok = got == (Reason.FW_POLICY_DROP if want == len(rules) else Reason.FW_DROP)
            if not ok:
                wrong.append(f"{f} -> {got.name}, want {want}")
    described = "\n".join(f"{i}: {r.describe()}" for i, r in enumerate(rules))
    assert not wrong, f"{len(wrong)} of {len(probes)} frames misclassified:\n" + "\n".join(wrong[:5]) + "\n" + described
    counted = {c.position: c.packets for c in fl.fw(lambda f: f.counters()) if c.packets}  # type: ignore[attr-defined]
    want_counts: dict[int, int] = {}
    for f in probes:
        first = next((pos for pos, r in enumerate(rules) if matches(r, f)), None)
        if first is None and policies.get(f.iface) == "drop":
            first = len(rules)
        if first is not None:
            want_counts[first] = want_counts.get(first, 0) + 1
    # the lab's hosts send a frame now and then (IPv6 neighbour discovery),
    # which a catch-all rule counts too
    extra = {pos: counted.get(pos, 0) - want_counts.get(pos, 0) for pos in set(counted) | set(want_counts)}
    assert all(0 <= n <= 3 for n in extra.values()), (counted, want_counts)


def test_an_ipv6_rule_drops_its_prefix_and_nothing_else(fl: FwLab) -> None:
    """Python's IPv6 /32 hash is the program's: a rule on a /48 drops it
    (its /32's bit set where the program reads it), and a frame of another
    /32 goes on."""
    a, b = "2001:db8:aaaa::", "2001:db9:bbbb::"
    assert v6_bit(int(ipaddress.IPv6Address(a)) >> 96) != v6_bit(int(ipaddress.IPv6Address(b)) >> 96)
    fl.fw(lambda f: f.replace([Rule.parse(action="drop", src=a + "/48")], {}))
    assert fl.run(fl.frame(IPv6(src=a + "1", dst=fl.lab.h2.ip6))).reason == Reason.FW_DROP
    assert fl.run(fl.frame(IPv6(src=b + "1", dst=fl.lab.h2.ip6))).reason != Reason.FW_DROP

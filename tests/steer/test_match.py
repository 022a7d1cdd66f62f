"""Steering by each match field, through BPF_PROG_RUN of the attached
program: a matching frame gets STEER_CPU (or STEER_XSK), the same frame with
that one field changed goes on to the router (FORWARD)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

from xdprouter.dataplane.abi import Reason, Verdict
from xdprouter.errors import UsageError
from xdprouter.firewall.rules import parse_prefix_lines
from xdprouter.lab import netns
from xdprouter.steer import Steering, SteerRule

from .conftest import SteerLab

H1, H2, H1_6, H2_6 = "10.1.0.2", "10.2.0.2", "fd01::2", "fd02::2"

# (match, frame that matches (l3, l4), frame that does not)
CASES: list[tuple[str, dict[str, Any], tuple[Any, Any], tuple[Any, Any]]] = [
    ("src", {"src": "10.1.0.0/24"}, (IP(src=H1, dst=H2), None), (IP(src="10.1.1.2", dst=H2), None)),
    ("dst", {"dst": "10.2.0.2/32"}, (IP(src=H1, dst=H2), None), (IP(src=H1, dst="10.2.0.3"), None)),
    ("src6", {"src": "fd01::/64"}, (IPv6(src=H1_6, dst=H2_6), None), (IPv6(src="fd01:1::2", dst=H2_6), None)),
    ("dst6", {"dst": "fd02::2/128"}, (IPv6(src=H1_6, dst=H2_6), None), (IPv6(src=H1_6, dst="fd02::3"), None)),
    ("proto", {"proto": "tcp"}, (None, TCP(sport=1, dport=2)), (None, UDP(sport=1, dport=2))),
    ("sport", {"proto": "udp", "sport": "1000-2000"}, (None, UDP(sport=1500)), (None, UDP(sport=2001))),
    ("dport", {"proto": "udp", "dport": "53"}, (None, UDP(dport=53)), (None, UDP(dport=54))),
    ("dport6", {"dport": "53"}, (IPv6(src=H1_6, dst=H2_6), UDP(dport=53)), (IPv6(src=H1_6, dst=H2_6), UDP(dport=5))),
    (
        "icmp_type",
        {"proto": "icmp", "icmp_type": "echo-request"},
        (None, ICMP(type=8)),
        (None, ICMP(type=0)),
    ),
    (
        "icmpv6_type",
        {"proto": "icmpv6", "icmp_type": "echo-request"},
        (IPv6(src=H1_6, dst=H2_6), ICMPv6EchoRequest()),
        (IPv6(src=H1_6, dst=H2_6), UDP()),
    ),
    ("family", {"dst": "10.0.0.0/8"}, (IP(src=H1, dst=H2), None), (IPv6(src=H1_6, dst=H2_6), None)),
]


@pytest.mark.parametrize(("match", "hit", "miss"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_field(sl: SteerLab, match: dict[str, Any], hit: tuple[Any, Any], miss: tuple[Any, Any]) -> None:
    before = sl.run(sl.frame(*miss)).reason  # FORWARD, or NO_NEIGH for another destination
    assert before in (Reason.FORWARD, Reason.NO_NEIGH)
    sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, **match)))
    got = sl.run(sl.frame(*hit))
    assert (got.action, got.reason, got.reason.verdict) == ("redirect", Reason.STEER_CPU, Verdict.STEERED)
    assert sl.run(sl.frame(*miss)).reason == before
    (row,) = sl.steer(lambda s: s.counters())
    assert (row.packets, row.missed) == (1, 0)
    assert row.bytes == len(sl.frame(*hit))


def test_iface(sl: SteerLab) -> None:
    sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=0, iface="veth2")))
    assert sl.run(sl.frame()).reason == Reason.FORWARD  # arrived on veth1
    back = sl.frame(IP(src=H2, dst=H1), mac=sl.router_mac2)
    assert sl.run(back, "veth2").reason == Reason.STEER_CPU


def test_sets(sl: SteerLab) -> None:
    """@SET: the firewall's named sets."""
    sl.fw(lambda f: f.load_set("h1s", parse_prefix_lines(["10.1.0.0/24", "fd01::/64"])))
    try:
        sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, src="@h1s")))
        assert sl.run(sl.frame()).reason == Reason.STEER_CPU
        assert sl.run(sl.frame(v6=True)).reason == Reason.STEER_CPU
        assert sl.run(sl.frame(IP(src="10.9.0.2", dst=H2))).reason == Reason.FORWARD
        sl.steer(lambda s: s.replace([SteerRule.parse("cpu", cpu=1, dst="@h1s")]))
        assert sl.run(sl.frame()).reason == Reason.FORWARD
        assert sl.run(sl.frame(IP(src=H2, dst=H1), mac=sl.router_mac2), "veth2").reason == Reason.STEER_CPU
        assert [r.match.dst for r in sl.steer(lambda s: s.rules())] == ["@h1s"]
        with pytest.raises(UsageError, match="unknown set 'nope'"):
            sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, dst="@nope")))
    finally:
        sl.steer(lambda s: s.flush())
        sl.fw(lambda f: f.delete_set("h1s"))


def test_first_match_wins_and_position(sl: SteerLab) -> None:
    sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, proto="udp")))
    xsk = sl.steer(lambda s: s.add(SteerRule.parse("xsk", proto="udp", dport="53")))
    # the cpu rule comes first
    assert sl.run(sl.frame()).reason == Reason.STEER_CPU
    # the xsk rule first: no socket is bound, so the frame goes on as if it
    # had not matched (the cpu rule is not tried: first match wins), counted as missed
    sl.steer(lambda s: s.delete([xsk.id]))
    again = sl.steer(lambda s: s.add(SteerRule.parse("xsk", proto="udp", dport="53"), position=0))
    assert sl.run(sl.frame()).reason == Reason.FORWARD
    rows = sl.steer(lambda s: s.counters())
    assert [r.rule.id for r in rows] == [again.id, rows[1].rule.id]
    assert (rows[0].packets, rows[0].missed, rows[0].missed_bytes) == (0, 1, len(sl.frame()))


def test_after_the_firewall(sl: SteerLab) -> None:
    """A frame the firewall drops is never steered."""
    from xdprouter.firewall import Rule

    sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1)))
    sl.fw(lambda f: f.add(Rule.parse(action="drop", proto="udp", dport="53")))
    assert sl.run(sl.frame()).reason == Reason.FW_DROP
    assert sl.run(sl.frame(l4=UDP(dport=54))).reason == Reason.STEER_CPU


def test_local_traffic_steered(sl: SteerLab) -> None:
    """Frames for the router itself (the kernel's) are steered too."""
    local = sl.frame(IP(src=H1, dst="10.1.0.1"))
    assert sl.run(local).reason == Reason.NOT_FORWARDED
    sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, dst="10.1.0.1/32")))
    assert sl.run(local).reason == Reason.STEER_CPU


def test_list_and_flush(sl: SteerLab) -> None:
    a = sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, queue_size=512, proto="udp", dport="5353")))
    b = sl.steer(lambda s: s.add(SteerRule.parse("xsk", iface="veth1", src="10.1.0.0/24", sport="1-1024")))
    rules = sl.steer(lambda s: s.rules())
    assert [r.id for r in rules] == [a.id, b.id]
    assert rules[0].describe() == "cpu 1 (queue 512) udp dport 5353"
    assert rules[1].describe() == "xsk iface veth1 src 10.1.0.0/24 sport 1-1024"
    sl.steer(lambda s: s.flush())
    assert sl.steer(lambda s: s.rules()) == []
    assert sl.run(sl.frame(l4=UDP(dport=5353))).reason == Reason.FORWARD


def test_xsk_with_a_socket(sl: SteerLab) -> None:
    """BPF_PROG_RUN arrives on rx queue 0: with a socket bound there, STEER_XSK."""
    sl.steer(lambda s: s.add(SteerRule.parse("xsk", proto="udp", dport="53")))
    assert sl.run(sl.frame()).reason == Reason.FORWARD  # no socket yet
    with netns(sl.lab.router), Steering().open_socket("veth1", 0):
        got = sl.run(sl.frame())
        assert (got.action, got.reason) == ("redirect", Reason.STEER_XSK)
    assert sl.run(sl.frame()).reason == Reason.FORWARD  # closed: the kernel removed it
    (row,) = sl.steer(lambda s: s.counters())
    assert (row.packets, row.missed) == (1, 2)


def test_trace_names_the_rule(sl: SteerLab) -> None:
    rule = sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, proto="udp", dport="53")))
    out = sl.lab.xdprouter("trace", "veth1", f'IP(src="{H1}", dst="{H2}")/UDP(dport=53)').stdout
    assert "xdprouter: redirect (steer_cpu)" in out
    assert f"steering rule {rule.id}: cpu 1 (queue 2048) udp dport 53 (steered)" in out
    out = sl.lab.xdprouter("trace", "veth1", f'IP(src="{H1}", dst="{H2}")/UDP(dport=54)', "--json").stdout
    assert json.loads(out)["steer_rule"] is None


def test_reused_slot_forgets_sockets(sl: SteerLab) -> None:
    """A socket registered for veth2's slot does not receive frames of the
    interface that takes the slot after veth2 is detached."""
    lab = sl.lab
    sl.steer(lambda s: s.add(SteerRule.parse("xsk")))
    back = sl.frame(IP(src=H2, dst=H1), mac=sl.router_mac2)
    lab.ip(lab.router, "link", "add", "slot0", "type", "veth", "peer", "name", "slot1")
    try:
        for name in ("slot0", "slot1"):
            lab.ip(lab.router, "link", "set", name, "up")
        with netns(lab.router), Steering().open_socket("veth2", 0):
            assert sl.run(back, "veth2").reason == Reason.STEER_XSK
            lab.xdprouter("detach", "veth2")
            lab.xdprouter("attach", "--mode", "native", "slot0")  # veth2's slot
            frame = sl.frame(IP(src=H2, dst=H1), mac=lab.mac(lab.router, "slot0"))
            assert sl.run(frame, "slot0").reason != Reason.STEER_XSK
    finally:
        lab.xdprouter("detach", "slot0", check=False)
        lab.ip(lab.router, "link", "del", "slot0", check=False)
        lab.xdprouter("attach", "--mode", "native", "veth2")

"""No way around the firewall: frames a review found slipping past it (to a
broadcast or multicast MAC, VLAN-tagged, IPv6 with a long extension header
chain) are now classified like any other."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from xdprouter.dataplane.abi import Reason
from xdprouter.firewall import Rule

from .conftest import FwLab

H1, ROUTER = "10.1.0.2", "10.1.0.1"


def _drop_h1(fl: FwLab) -> None:
    fl.fw(lambda f: f.add(Rule.parse(action="drop", src="10.1.0.0/24")))


def _verdict(fl: FwLab, frame: bytes) -> tuple[str, Reason | None]:
    result = fl.run(frame)
    return result.action, result.reason


def test_broadcast_and_multicast_macs_see_the_firewall(fl: FwLab) -> None:
    for mac in ("ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"):
        frame = bytes(Ether(dst=mac) / IP(src=H1, dst=ROUTER) / UDP(dport=9999))
        assert _verdict(fl, frame) == ("pass", Reason.NOT_OUR_MAC)  # no rule: the kernel's
        _drop_h1(fl)
        assert _verdict(fl, frame) == ("drop", Reason.FW_DROP)
        fl.fw(lambda f: f.flush())


def test_ipv6_to_a_multicast_mac_sees_the_firewall(fl: FwLab) -> None:
    fl.fw(lambda f: f.add(Rule.parse(action="drop", src="fd01::/64")))
    frame = bytes(Ether(dst="33:33:00:00:00:01") / IPv6(src="fd01::2", dst="fd01::1") / UDP(dport=9999))
    assert _verdict(fl, frame) == ("drop", Reason.FW_DROP)


def test_another_hosts_unicast_mac_still_skips_everything(fl: FwLab) -> None:
    """Linux drops it before any socket (PACKET_OTHERHOST): nothing to filter."""
    _drop_h1(fl)
    frame = bytes(Ether(dst="02:aa:bb:cc:dd:ee") / IP(src=H1, dst=ROUTER) / UDP(dport=9999))
    assert _verdict(fl, frame) == ("pass", Reason.NOT_OUR_MAC)


def test_vlan_tagged_frames_see_the_firewall(fl: FwLab) -> None:
    inner = IP(src=H1, dst=ROUTER) / UDP(dport=9999)
    single = bytes(Ether(dst=fl.router_mac) / Dot1Q(vlan=100) / inner)
    double = bytes(Ether(dst=fl.router_mac) / Dot1AD(vlan=10) / Dot1Q(vlan=100) / inner)
    v6 = bytes(Ether(dst=fl.router_mac) / Dot1Q(vlan=100) / IPv6(src="fd01::2", dst="fd01::1") / UDP())
    for frame in (single, double, v6):
        assert _verdict(fl, frame) == ("pass", Reason.NOT_IP)  # no rule: the kernel's VLAN devices
    _drop_h1(fl)
    fl.fw(lambda f: f.add(Rule.parse(action="drop", src="fd01::/64")))
    for frame in (single, double, v6):
        assert _verdict(fl, frame) == ("drop", Reason.FW_DROP)


def _chain(n: int) -> IPv6:
    pkt = IPv6(src="fd01::2", dst="fd02::2")
    for _ in range(n):
        pkt = pkt / IPv6ExtHdrDestOpt()
    return pkt


def test_ipv6_chain_longer_than_walked_fails_closed(fl: FwLab) -> None:
    fl.fw(lambda f: f.add(Rule.parse(action="drop", dport="9999", proto="udp")))
    ok, long = _chain(4), _chain(5)
    assert _verdict(fl, fl.frame(ok, UDP(dport=9999))) == ("drop", Reason.FW_DROP)
    assert _verdict(fl, fl.frame(long, UDP(dport=9999))) == ("drop", Reason.FW_UNPARSED)
    assert _verdict(fl, fl.frame(long, UDP(dport=53))) == ("drop", Reason.FW_UNPARSED)


def test_without_rules_long_chains_are_the_kernels(fl: FwLab) -> None:
    long = _chain(5)
    assert _verdict(fl, fl.frame(long, UDP(dport=9999))) == ("pass", Reason.IPV6_EXT_HEADER)


def test_values_that_would_not_fit_or_are_empty_are_refused(fl: FwLab) -> None:
    import pytest

    from xdprouter.errors import UsageError

    bad = [
        {"action": "drop", "src": ""},
        {"action": "drop", "dport": " "},
        {"action": "drop", "proto": "²"},
        {"action": "limit", "src": "10.1.0.0/24", "bps": 1 << 32},
        {"action": "limit", "src": "10.1.0.0/24", "pps": 100, "burst": 1 << 32},
        {"action": "limit", "src": "10.1.0.0/24", "pps": 2_000_000_000},
        {"action": "limit", "src": "10.1.0.0/24", "pps": 10, "block_after": 5, "block_seconds": float("inf")},
        {"action": "limit", "src": "10.1.0.0/24", "pps": 10, "block_after": 5, "block_seconds": float("nan")},
    ]
    for kw in bad:
        with pytest.raises(UsageError):
            Rule.parse(**kw)  # type: ignore[arg-type]


def test_missing_files_are_one_line_errors(fl: FwLab) -> None:
    for args in (("firewall", "load", "/nonexistent.toml"), ("firewall", "set", "load", "s", "/nonexistent")):
        out = fl.lab.xdprouter(*args, check=False)
        assert out.returncode == 1
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("xdprouter: error:"), out.stderr


def test_running_out_of_classifier_steps_fails_closed(fl: FwLab) -> None:
    """More matching limit rules than the step budget: the frame must not go
    past the rules the classifier did not reach (a drop rule here)."""
    many = [Rule.parse(action="limit", src="10.1.0.0/24", pps=100_000_000) for _ in range(1100)]
    fl.fw(lambda f: f.replace([*many, Rule.parse(action="drop", src="10.1.0.0/24")]))
    assert _verdict(fl, fl.frame()) == ("drop", Reason.FW_UNPARSED)
    few = many[:100]
    fl.fw(lambda f: f.replace([*few, Rule.parse(action="drop", src="10.1.0.0/24")]))
    assert _verdict(fl, fl.frame()) == ("drop", Reason.FW_DROP)


def test_a_full_port_range_survives_later_edits(fl: FwLab) -> None:
    """0-65535 still means "has ports": read back and rewritten by an
    unrelated edit, it must not turn into a rule on every protocol."""
    from scapy.layers.inet import ICMP

    fl.fw(lambda f: f.add(Rule.parse(action="drop", dport="0-65535")))
    icmp = fl.frame(IP(src=H1, dst="10.2.0.2"), ICMP())
    assert _verdict(fl, icmp) == ("redirect", Reason.FORWARD)
    fl.fw(lambda f: f.add(Rule.parse(action="allow", src="192.0.2.0/24")))  # any edit rewrites the table
    assert _verdict(fl, icmp) == ("redirect", Reason.FORWARD)
    assert _verdict(fl, fl.frame(IP(src=H1, dst="10.2.0.2"), UDP(dport=7))) == ("drop", Reason.FW_DROP)

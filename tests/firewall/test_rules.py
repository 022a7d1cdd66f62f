"""Every match field, action, the order, sets, counters and refusals, through
BPF_PROG_RUN of the real attached program (its verdict and its reason)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt

from xdprouter.dataplane.abi import Reason
from xdprouter.errors import UsageError
from xdprouter.firewall import Firewall, Rule, parse_prefix_lines

from .conftest import FwLab

H1, H2 = "10.1.0.2", "10.2.0.2"


def add(fl: FwLab, position: int | None = None, **kw: Any) -> Rule:
    rule = Rule.parse(**kw)
    fl.fw(lambda f: f.add(rule, position))
    return rule


def verdict(fl: FwLab, frame: bytes, iface: str = "veth1") -> tuple[str, Reason | None]:
    r = fl.run(frame, iface)
    return r.action, r.reason


DROP = ("drop", Reason.FW_DROP)
FWD = ("redirect", Reason.FORWARD)

# (rule, frame that matches, frame that does not): one per match field
FIELDS = {
    "src-v4": ({"src": "10.1.0.0/24"}, IP(src=H1, dst=H2), IP(src="10.1.1.2", dst=H2)),
    "src-v4-host": ({"src": "10.1.0.2"}, IP(src=H1, dst=H2), IP(src="10.1.0.3", dst=H2)),
    "dst-v4": ({"dst": "10.2.0.0/30"}, IP(src=H1, dst=H2), IP(src=H1, dst="192.0.2.1")),
    "src-v6": ({"src": "fd01::/64"}, IPv6(src="fd01::2", dst="fd02::2"), IPv6(src="fd01:0:0:1::2", dst="fd02::2")),
    "dst-v6": ({"dst": "fd02::2/128"}, IPv6(src="fd01::2", dst="fd02::2"), IPv6(src="fd01::2", dst="fd02::3")),
}


@pytest.mark.parametrize("name", list(FIELDS))
def test_address_fields(fl: FwLab, name: str) -> None:
    kw, hit, miss = FIELDS[name]
    add(fl, action="drop", **kw)
    assert verdict(fl, fl.frame(hit)) == DROP
    assert verdict(fl, fl.frame(miss))[1] != Reason.FW_DROP


@pytest.mark.parametrize(
    ("kw", "hit", "miss"),
    [
        ({"proto": "tcp"}, TCP(dport=80), UDP(dport=80)),
        ({"proto": "udp", "dport": "53"}, UDP(dport=53), UDP(dport=54)),
        ({"dport": "1000-2000"}, TCP(dport=2000), TCP(dport=2001)),
        ({"dport": "1000-2000"}, UDP(dport=1000), UDP(dport=999)),
        ({"sport": "0-1023"}, UDP(sport=1023), UDP(sport=1024)),
        ({"proto": "icmp"}, ICMP(), UDP()),
        ({"proto": "17", "sport": "5"}, UDP(sport=5), TCP(sport=5)),
    ],
    ids=["proto", "proto+dport", "dport-range-hi", "dport-range-lo", "sport-range", "icmp", "proto-number"],
)
def test_protocol_and_port_fields(fl: FwLab, kw: dict[str, str], hit: Any, miss: Any) -> None:
    add(fl, action="drop", **kw)
    assert verdict(fl, fl.frame(l4=hit)) == DROP
    assert verdict(fl, fl.frame(l4=miss)) == FWD


@pytest.mark.parametrize(
    ("kw", "hit", "miss"),
    [
        ({"proto": "icmp", "icmp_type": "echo-request"}, ICMP(type=8), ICMP(type=0)),
        ({"proto": "icmp", "icmp_type": "3"}, ICMP(type=3, code=1), ICMP(type=8)),
        ({"proto": "icmpv6", "icmp_type": "echo-request"}, ICMPv6EchoRequest(), ICMPv6EchoReply()),
    ],
    ids=["icmp-echo-request", "icmp-number", "icmpv6-echo-request"],
)
def test_icmp_type_field(fl: FwLab, kw: dict[str, str], hit: Any, miss: Any) -> None:
    rule = add(fl, action="drop", **kw)
    v6 = kw["proto"] == "icmpv6"
    assert verdict(fl, fl.frame(l4=hit, v6=v6)) == DROP
    assert verdict(fl, fl.frame(l4=miss, v6=v6)) == FWD
    assert verdict(fl, fl.frame(v6=v6)) == FWD  # UDP
    (listed,) = fl.fw(lambda f: f.rules())  # type: ignore[misc]
    assert listed.icmp_type == rule.icmp_type and "icmp-type" in listed.describe()


def test_port_rules_do_not_match_icmp_types(fl: FwLab) -> None:
    """ICMP types live in slots of their own: no port range covers them."""
    add(fl, action="drop", sport="0-65535")
    add(fl, action="drop", dport="8")
    assert verdict(fl, fl.frame(l4=ICMP(type=8))) == FWD
    assert verdict(fl, fl.frame(l4=UDP(dport=8))) == DROP


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"icmp_type": "8"}, "needs --proto icmp"),
        ({"proto": "udp", "icmp_type": "8"}, "needs --proto icmp"),
        ({"proto": "icmp", "icmp_type": "256"}, "unknown icmp type"),
        ({"proto": "icmp", "icmp_type": "packet-too-big"}, "unknown icmp type"),
        ({"proto": "icmp", "icmp_type": " "}, "empty value"),
    ],
)
def test_invalid_icmp_types_are_refused(fl: FwLab, kw: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        add(fl, action="drop", **kw)
    assert fl.fw(lambda f: f.rules()) == []


def test_icmp_type_from_cli_and_config(fl: FwLab, tmp_path: Any) -> None:
    out = fl.lab.xdprouter("firewall", "add", "--action", "drop", "--proto", "icmp", "--icmp-type", "echo-request")
    assert "icmp-type echo-request" in out.stdout
    assert verdict(fl, fl.frame(l4=ICMP(type=8))) == DROP
    conf = tmp_path / "fw.toml"
    conf.write_text('[firewall]\nrules = [{action = "drop", proto = "icmpv6", icmp_type = 128}]\n')
    fl.fw(lambda f: f.load_config(conf))
    assert verdict(fl, fl.frame(l4=ICMP(type=8))) == FWD
    assert verdict(fl, fl.frame(l4=ICMPv6EchoRequest(), v6=True)) == DROP


def test_iface_field(fl: FwLab) -> None:
    add(fl, action="drop", iface="veth2")
    assert verdict(fl, fl.frame(), "veth1") == FWD
    veth2 = fl.frame(mac=fl.lab.mac(fl.lab.router, "veth2"))
    assert verdict(fl, veth2, "veth2")[1] == Reason.FW_DROP


def test_port_rules_need_ports_and_see_past_ipv6_extension_headers(fl: FwLab) -> None:
    add(fl, action="drop", dport="53")
    ext = IPv6(src="fd01::2", dst="fd02::2") / IPv6ExtHdrDestOpt()
    assert verdict(fl, fl.frame(ext, UDP(dport=53)))[1] == Reason.FW_DROP  # no dodging by an extension header
    frag = IP(src=H1, dst=H2, frag=100)  # a non-first fragment has no ports
    assert verdict(fl, fl.frame(frag, UDP(dport=53)))[1] == Reason.FRAGMENT


def test_applies_to_traffic_for_the_router_and_expiring_ttl(fl: FwLab) -> None:
    add(fl, action="drop", src="10.1.0.0/24")
    assert verdict(fl, fl.frame(IP(src=H1, dst="10.1.0.1")))[1] == Reason.FW_DROP  # local delivery
    assert verdict(fl, fl.frame(IP(src=H1, dst=H2, ttl=1)))[1] == Reason.FW_DROP


def test_first_match_wins_in_list_order(fl: FwLab) -> None:
    allow = add(fl, action="allow", src="10.1.0.2/32")
    add(fl, action="drop", src="10.1.0.0/16")
    assert verdict(fl, fl.frame()) == FWD
    assert verdict(fl, fl.frame(IP(src="10.1.0.3", dst=H2))) == DROP
    fl.fw(lambda f: f.delete([allow.id]))
    add(fl, position=1, action="allow", src="10.1.0.2/32")  # now after the drop
    assert verdict(fl, fl.frame()) == DROP


def test_default_policy_per_interface(fl: FwLab) -> None:
    fl.fw(lambda f: f.set_policy("veth1", "drop"))
    assert verdict(fl, fl.frame()) == ("drop", Reason.FW_POLICY_DROP)
    veth2 = fl.frame(mac=fl.lab.mac(fl.lab.router, "veth2"))
    assert verdict(fl, veth2, "veth2")[1] != Reason.FW_POLICY_DROP
    add(fl, action="allow", proto="udp", dport="53")
    assert verdict(fl, fl.frame()) == FWD
    assert verdict(fl, fl.frame(l4=UDP(dport=54)))[1] == Reason.FW_POLICY_DROP


def test_counters_per_rule(fl: FwLab) -> None:
    a = add(fl, action="allow", dport="53")
    d = add(fl, action="drop", dport="54")
    for _ in range(3):
        fl.run(fl.frame(l4=UDP(dport=53)))
    fl.run(fl.frame(l4=UDP(dport=54)))
    rows = {c.rule.id: c for c in fl.fw(lambda f: f.counters())}  # type: ignore[attr-defined]
    assert (rows[a.id].packets, rows[d.id].packets) == (3, 1)
    assert rows[d.id].bytes == len(fl.frame(l4=UDP(dport=54)))


def test_sets_v4_v6_and_atomic_replace(fl: FwLab) -> None:
    fl.fw(lambda f: f.load_set("bad", parse_prefix_lines(["10.1.0.0/24", "fd01::/64", "# comment", ""])))
    add(fl, action="drop", src="@bad")
    add(fl, action="drop", dst="@bad", proto="tcp")
    assert verdict(fl, fl.frame()) == DROP
    assert verdict(fl, fl.frame(v6=True)) == DROP
    assert verdict(fl, fl.frame(IP(src="10.9.0.1", dst=H2))) == FWD
    assert verdict(fl, fl.frame(IP(src="10.9.0.1", dst="10.1.0.5"), TCP()))[1] == Reason.FW_DROP
    fl.fw(lambda f: f.load_set("bad", parse_prefix_lines(["10.9.0.0/16"])))
    assert verdict(fl, fl.frame()) == FWD
    assert verdict(fl, fl.frame(IP(src="10.9.0.1", dst=H2))) == DROP
    with pytest.raises(UsageError, match="used by rule"):
        fl.fw(lambda f: f.delete_set("bad"))


def test_set_show_gives_back_what_was_loaded(fl: FwLab, tmp_path: Any) -> None:
    lines = ["10.9.0.0/16", "192.0.2.7/32", "fd01::/64", "2001:db8::1/128", "10.1.0.0/24"]
    fl.fw(lambda f: f.load_set("shown", parse_prefix_lines(lines)))
    try:
        shown = fl.fw(lambda f: f.set_prefixes("shown"))
        assert shown == ["10.1.0.0/24", "10.9.0.0/16", "192.0.2.7/32", "2001:db8::1/128", "fd01::/64"]
        out = fl.lab.xdprouter("firewall", "set", "show", "shown").stdout
        (tmp_path / "again").write_text(out)  # `set show` output loads back as it was
        fl.lab.xdprouter("firewall", "set", "load", "again", str(tmp_path / "again"))
        assert fl.fw(lambda f: f.set_prefixes("again")) == shown
        bad = fl.lab.xdprouter("firewall", "set", "show", "nosuch", check=False)
        assert bad.returncode == 1 and "unknown set 'nosuch'" in bad.stderr
    finally:
        for name in ("shown", "again"):
            fl.fw(lambda f, n=name: f.delete_set(n) if n in {s.name for s in f.sets()} else None)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"src": "10.1.0.300/24"}, "bad source prefix"),
        ({"dport": "70000"}, "out of range"),
        ({"sport": "9-3"}, "low end above"),
        ({"src": "@nosuchset"}, "unknown set"),
        ({"proto": "bogus"}, "unknown protocol"),
        ({"src": "10.0.0.0/8", "dst": "fd00::/8"}, "different families"),
        ({"action": "limit"}, "needs --pps or --bps"),
        ({"iface": "nosuch0"}, "no interface"),
    ],
)
def test_invalid_rules_are_refused_and_change_nothing(fl: FwLab, kw: dict[str, str], message: str) -> None:
    add(fl, action="drop", dport="9")
    before = fl.fw(lambda f: f.rules())
    with pytest.raises(UsageError, match=message):
        add(fl, **({"action": "drop"} | kw))
    assert fl.fw(lambda f: f.rules()) == before


def test_cli_add_list_json_and_one_line_errors(fl: FwLab) -> None:
    lab = fl.lab
    out = lab.xdprouter("firewall", "add", "--action", "drop", "--src", "10.1.0.0/24")
    assert out.stdout.startswith("rule ")
    assert verdict(fl, fl.frame()) == DROP
    import json

    rows = json.loads(lab.xdprouter("firewall", "list", "--json").stdout)
    assert rows[0]["src"] == "10.1.0.0/24" and rows[0]["packets"] == 1
    bad = lab.xdprouter("firewall", "add", "--action", "drop", "--src", "10.1.0.0/33", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "bad source prefix" in bad.stderr


def test_config_file_section(fl: FwLab, tmp_path: Any) -> None:
    (tmp_path / "bogons.txt").write_text("10.1.0.0/24\n")
    cfg = tmp_path / "xdprouter.toml"
    cfg.write_text(
        '[firewall]\npolicy = { veth2 = "drop" }\n'
        '[firewall.sets]\nbogons = { file = "bogons.txt" }\n'
        '[[firewall.rules]]\naction = "allow"\nsrc = "10.1.0.7"\n'
        '[[firewall.rules]]\naction = "drop"\nsrc = "@bogons"\n'
    )
    out = fl.lab.xdprouter("firewall", "load", str(cfg))
    assert "loaded 2 rules, 1 sets, 1 policies" in out.stdout
    assert verdict(fl, fl.frame()) == DROP
    assert verdict(fl, fl.frame(IP(src="10.1.0.7", dst=H2))) == FWD
    veth2 = fl.frame(mac=fl.lab.mac(fl.lab.router, "veth2"))
    assert verdict(fl, veth2, "veth2")[1] == Reason.FW_DROP  # the set rule comes before the policy
    assert verdict(fl, fl.frame(IP(src="10.9.0.7", dst=H2), mac=veth2[:6].hex(":")), "veth2")[1] == (
        Reason.FW_POLICY_DROP
    )


def test_loading_100k_prefixes_from_a_file_under_two_seconds(fl: FwLab, tmp_path: Any) -> None:
    path = tmp_path / "feed.txt"
    path.write_text("".join(f"100.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32\n" for i in range(100_000)))
    n, seconds = fl.fw(lambda f: f.load_set_file("feed", path))  # type: ignore[misc]
    assert n == 100_000
    assert seconds < 2.0, f"{seconds:.2f} s"
    add(fl, action="drop", src="@feed")
    assert verdict(fl, fl.frame(IP(src="100.1.134.159", dst=H2))) == DROP
    assert verdict(fl, fl.frame(IP(src="100.2.0.0", dst=H2))) == FWD
    assert time.perf_counter() > 0
    fl.fw(lambda f: f.flush())
    fl.fw(lambda f: f.delete_set("feed"))


def test_firewall_api_needs_an_attached_router() -> None:
    with pytest.raises(UsageError, match="not attached"):
        Firewall().rules()


def test_a_refused_config_changes_no_set(fl: FwLab, tmp_path: Any) -> None:
    """Refused for a limit only the compiler knows (too many set references):
    the sets it names must not have been replaced already."""
    first = tmp_path / "first.toml"
    first.write_text(
        '[firewall.sets]\nbogons = ["10.1.0.0/24"]\n[[firewall.rules]]\naction = "drop"\nsrc = "@bogons"\n'
    )
    fl.lab.xdprouter("firewall", "load", str(first))
    assert verdict(fl, fl.frame()) == DROP
    sets = "".join(f's{i} = ["198.18.{i}.0/24"]\n' for i in range(5))
    rules = "".join(f'[[firewall.rules]]\naction = "drop"\nsrc = "@s{i}"\n' for i in range(5))
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[firewall.sets]\nbogons = ["203.0.113.0/24"]\n{sets}{rules}')
    out = fl.lab.xdprouter("firewall", "load", str(bad), check=False)
    assert out.returncode == 1 and "at most" in out.stderr
    assert verdict(fl, fl.frame()) == DROP  # bogons still holds 10.1.0.0/24
    names = set(fl.fw(lambda f: [s.name for s in f.sets()]))  # type: ignore[arg-type]
    assert not names & {f"s{i}" for i in range(5)}, "the refused config's new sets were loaded"


def test_rules_on_a_deleted_interface_do_not_block_edits(fl: FwLab) -> None:
    """A rule and a policy on an interface that is then deleted read back as
    ifindex:N, match nothing, and leave every other edit possible."""
    lab = fl.lab
    lab.ip(lab.router, "link", "add", "gone0", "type", "veth", "peer", "name", "gone0p")
    try:
        on_gone = add(fl, action="drop", iface="gone0", dport="53")
        fl.fw(lambda f: f.set_policy("gone0", "drop"))
        index = int(lab.run(lab.router, "cat", "/sys/class/net/gone0/ifindex").stdout)
    finally:
        lab.ip(lab.router, "link", "del", "gone0")
    rules, policies = fl.fw(lambda f: (f.rules(), f.policies()))  # type: ignore[misc]
    assert [r.iface for r in rules] == [f"ifindex:{index}"]
    assert policies == {f"ifindex:{index}": "drop"}
    other = add(fl, action="drop", src="10.1.0.2")  # refused before the fix
    assert verdict(fl, fl.frame()) == DROP
    fl.fw(lambda f: f.delete([on_gone.id]))
    fl.fw(lambda f: f.set_policy(f"ifindex:{index}", "allow"))
    rules, policies = fl.fw(lambda f: (f.rules(), f.policies()))  # type: ignore[misc]
    assert ([r.id for r in rules], policies) == ([other.id], {})
    with pytest.raises(UsageError, match="no interface"):
        add(fl, action="drop", iface="nosuch0")


@pytest.mark.parametrize("name", ["ifindex:0", "ifindex:4294967298", "veth1-by-index"])
def test_ifindex_names_only_a_gone_interface(fl: FwLab, name: str) -> None:
    """ifindex:0 would be "any interface", a 33-bit one would wrap, and a
    live interface's index has a name: all refused, as rule and as policy."""
    if name == "veth1-by-index":
        name = "ifindex:" + fl.lab.run(fl.lab.router, "cat", "/sys/class/net/veth1/ifindex").stdout.strip()
    with pytest.raises(UsageError, match="no interface"):
        add(fl, action="drop", iface=name)
    with pytest.raises(UsageError, match="no interface"):
        fl.fw(lambda f: f.set_policy(name, "drop"))
    assert fl.fw(lambda f: (f.rules(), f.policies())) == ([], {})


def test_an_add_lists_the_interfaces_once(fl: FwLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """One `firewall add` reads the namespace's interfaces over netlink once
    (it used to list them five times)."""
    from xdprouter import netlink

    calls = []
    real = netlink.links
    monkeypatch.setattr(netlink, "links", lambda: calls.append(1) or real())
    add(fl, action="drop", src="192.0.2.0/24", iface="veth1")
    assert len(calls) == 1


def test_a_refused_change_gives_no_ids(fl: FwLab) -> None:
    """Ids are given only once the change is in: a rule the compiler refuses
    (a fifth (set, direction) pair) keeps id 0, and the rules in place keep
    theirs (ids used to be given, and counters zeroed, before compiling)."""
    names = ["ids_a", "ids_b", "ids_c"]
    for name in names:
        fl.fw(lambda f, name=name: f.load_set(name, parse_prefix_lines(["192.0.2.0/24"])))
    try:
        pairs = [("src", "ids_a"), ("src", "ids_b"), ("src", "ids_c"), ("dst", "ids_a")]
        kept = [add(fl, action="drop", **{where: f"@{name}"}) for where, name in pairs]
        refused = Rule.parse(action="drop", dst="@ids_b")
        with pytest.raises(UsageError, match="set, direction"):
            fl.fw(lambda f: f.add(refused))
        assert refused.id == 0
        assert [r.id for r in fl.fw(lambda f: f.rules())] == [r.id for r in kept]  # type: ignore[attr-defined]
    finally:
        fl.fw(lambda f: f.flush())
        for name in names:
            fl.fw(lambda f, name=name: f.delete_set(name))

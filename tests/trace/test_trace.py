"""xdprouter trace: its answer against what the router really sends, and
against Linux's route; bad input refused in one line."""

from __future__ import annotations

import json
import socket
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from xdprouter.errors import UsageError
from xdprouter.lab import Lab, netns
from xdprouter.trace import parse_expression

ETH_P_ALL = 0x0003


@pytest.fixture
def router(attached_lab: Lab) -> Lab:
    lab = attached_lab
    for dst in ("10.1.0.2", "fd01::2", "10.2.0.2", "fd02::2"):
        six = ["-6"] if ":" in dst else []
        lab.run(lab.router, "ping", *six, "-n", "-c", "1", "-W", "2", dst, timeout=10)
    return lab


def trace(lab: Lab, *args: str) -> dict:
    return json.loads(lab.xdprouter("trace", *args, "--json").stdout)


def forwarded(lab: Lab, frame: bytes, marker: bytes) -> bytes | None:
    """What h2 receives when h1 sends ``frame`` (None within a second)."""
    with netns(lab.h2.ns):
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with netns(lab.h1.ns):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with rx, tx:
        rx.bind(("eth0", 0))
        rx.settimeout(0.2)
        tx.bind(("eth0", 0))
        tx.send(frame)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            try:
                got = rx.recv(4096)
            except TimeoutError:
                continue
            if marker in got:
                return got
    return None


def cases(lab: Lab) -> list[tuple[str, bytes]]:
    e = Ether(dst=lab.mac(lab.router, "veth1"), src=lab.mac(lab.h1.ns, "eth0"))
    return [
        ("udp4", bytes(e / IP(src="10.1.0.2", dst="10.2.0.2") / UDP(sport=1000, dport=53) / b"trace-udp4")),
        ("tcp4", bytes(e / IP(src="10.1.0.2", dst="10.2.0.2", tos=0x10) / TCP(dport=80, flags="S") / b"trace-tcp4")),
        ("udp6", bytes(e / IPv6(src="fd01::2", dst="fd02::2") / UDP(dport=5353) / b"trace-udp6")),
        ("ttl1", bytes(e / IP(src="10.1.0.2", dst="10.2.0.2", ttl=1) / UDP() / b"trace-ttl1")),
        ("local", bytes(e / IP(src="10.1.0.2", dst="10.1.0.1") / UDP(dport=9) / b"trace-local")),
    ]


def test_trace_matches_real_forwarding(router: Lab) -> None:
    lab = router
    h2_mac, r2_mac = lab.mac(lab.h2.ns, "eth0"), lab.mac(lab.router, "veth2")
    for name, frame in cases(lab):
        t = trace(lab, "veth1", "--hex", frame.hex())
        real = forwarded(lab, frame, f"trace-{name}".encode())
        assert t["input"] == frame.hex(), name
        if name in ("ttl1", "local"):
            assert (t["verdict"], real) == ("pass", None), name
            assert t["reason"] == ("ttl_expired" if name == "ttl1" else "not_forwarded")
            continue
        assert t["verdict"] == "redirect" and t["reason"] == "forward", name
        assert real is not None and bytes.fromhex(t["output"]) == real, name
        nh = "fd02::2" if name == "udp6" else "10.2.0.2"
        want = {"egress": "veth2", "next_hop": nh, "src_mac": r2_mac, "dst_mac": h2_mac, "note": ""}
        assert t["xdp"] == want, name
        assert t["linux"] == want, name
        assert t["linux_route"]["type"] == "unicast"


def test_expression_and_counters(router: Lab) -> None:
    """A scapy expression gets an Ethernet header to IFACE; each trace counts
    once under its reason, like a real frame."""
    lab = router
    before = json.loads(lab.xdprouter("stats", "--json").stdout)["veth1"]
    t = trace(lab, "veth1", 'IP(src="10.1.0.2", dst="10.2.0.2")/UDP(dport=53)')
    after = json.loads(lab.xdprouter("stats", "--json").stdout)["veth1"]
    frame = bytes.fromhex(t["input"])
    assert Ether(frame).dst == lab.mac(lab.router, "veth1") and Ether(frame).src == "02:00:00:00:00:01"
    assert t["verdict"] == "redirect" and t["xdp"]["egress"] == "veth2"
    forward = [c["reasons"].get("forward", {"packets": 0})["packets"] for c in (before, after)]
    assert forward[1] == forward[0] + 1
    text = lab.xdprouter("trace", "veth1", 'IP(src="10.1.0.2", dst="10.9.9.9")/UDP()').stdout
    assert "xdprouter: pass (" in text and "linux:" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["veth1", '__import__("os").system("touch /tmp/x")'], "not accepted in a packet expression"),
        (["veth1", '__import__("os")'], "unknown or refused layer '__import__'"),
        (["veth1", "IP(dst=open('/etc/passwd').read())"], "only literal arguments are accepted"),
        (["veth1", "IP().__class__"], "not accepted in a packet expression"),
        (["veth1", "IP(nosuch=1)"], "IP has no field 'nosuch'"),
        (["nosuch0", "IP()"], "unknown interface: nosuch0"),
        (["veth1", "--hex", "abc"], "--hex: an even number of hex digits"),
        (["veth1", "--pcap", "/nonexistent.pcap"], "no such file: /nonexistent.pcap"),
        (["veth1"], "give one packet: a scapy expression, --hex or --pcap"),
    ],
)
def test_bad_input_one_line(router: Lab, args: list[str], message: str) -> None:
    p = router.xdprouter("trace", *args, check=False)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and message in p.stderr, p.stderr


def test_not_attached(lab: Lab) -> None:
    p = lab.xdprouter("trace", "veth1", "IP()", check=False)
    assert (p.returncode, p.stderr) == (1, "xdprouter: error: xdprouter is not attached in this namespace\n")


def test_pcap_input(router: Lab, tmp_path) -> None:
    from scapy.utils import wrpcap

    lab = router
    frames = [f for _, f in cases(lab)]
    path = tmp_path / "in.pcap"
    wrpcap(str(path), [Ether(f) for f in frames])
    t = trace(lab, "veth1", "--pcap", str(path), "--index", "2")
    assert t["input"] == frames[2].hex() and t["xdp"]["next_hop"] == "fd02::2"


def test_expression_parser() -> None:
    pkt = parse_expression('IPv6(dst="fd02::2", hlim=1)/UDP(dport=53)/"payload"')
    assert pkt[IPv6].hlim == 1 and bytes(pkt).endswith(b"payload")
    for bad in ("lambda: 0", "IP() + IP()", "x", "IP(**{'dst': '1.2.3.4'})", "[IP()]"):
        with pytest.raises(UsageError):
            parse_expression(bad)


def test_names_the_firewall_rules_that_counted(router: Lab) -> None:
    """The rules whose counters the traced frame moved: a limit rule it was
    within, then the drop that decided."""
    lab = router
    lab.xdprouter("firewall", "add", "--action", "limit", "--proto", "udp", "--pps", "1000")
    lab.xdprouter("firewall", "add", "--action", "drop", "--src", "10.1.0.0/24", "--proto", "udp", "--dport", "53")
    try:
        t = trace(lab, "veth1", 'IP(src="10.1.0.2", dst="10.2.0.2")/UDP(dport=53)')
        assert t["reason"] == "fw_drop"
        assert [(r["position"], r["action"]) for r in t["firewall_rules"]] == [(0, "limit"), (1, "drop")]
        text = lab.xdprouter("trace", "veth1", 'IP(src="10.1.0.2", dst="10.2.0.2")/UDP(dport=53)').stdout
        assert "firewall rule" in text and "(position 1): drop udp src 10.1.0.0/24 dport 53" in text
        t = trace(lab, "veth1", 'IP(src="10.1.0.2", dst="10.2.0.2")/TCP(dport=53)')
        assert t["firewall_rules"] == [] and t["verdict"] == "redirect"
    finally:
        lab.xdprouter("firewall", "flush")

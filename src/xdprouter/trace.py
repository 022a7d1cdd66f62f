"""``xdprouter trace``: where would the fast path send this packet, and where
would Linux?

The packet (a pcap/pcapng file, hex bytes, or a short scapy expression) runs
through the attached program and its live maps with BPF_PROG_RUN
(``Router.test_run``) as if it had arrived on the ingress interface. The
program's verdict, reason and output frame are printed with the FIB result
read back from the output (egress interface: the one whose MAC is the new
source; next hop: the neighbour whose MAC is the new destination), and beside
them Linux's own answer for the same fields (``ip route get`` over netlink:
destination, source, input interface, tos, protocol, ports) and the
neighbour entry it would use.

A trace counts: the frame is counted under its reason like a real one, and a
firewall rule or rate limit it matches counts it too (docs/operations.md),
and so does a steering rule, which the trace names.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import string
from dataclasses import asdict, dataclass, field
from typing import Any

from . import netlink
from .cliargs import ranged_int
from .errors import UsageError
from .router import Router

DEFAULT_SRC_MAC = "02:00:00:00:00:01"

EXAMPLES = """\
examples:
  xdprouter trace veth1 'IP(dst="10.2.0.2")/UDP(dport=53)'
  xdprouter trace veth1 'IPv6(src="fd01::2", dst="fd02::2", hlim=1)/ICMPv6EchoRequest()' --json
  xdprouter trace eth0 --pcap dropped.pcapng --index 3
  xdprouter trace eth0 --hex 'ffffffffffff02000000000108004500...'
A scapy expression without an Ethernet layer gets one addressed to IFACE's MAC
(source 02:00:00:00:00:01). Only scapy layer constructors, '/', and literal
arguments are accepted; nothing is evaluated.
"""


def _layers() -> dict[str, Any]:
    from scapy.layers import inet, inet6, l2
    from scapy.packet import Padding, Raw

    names = {
        l2: ("Ether", "Dot1Q", "Dot1AD", "ARP"),
        inet: ("IP", "UDP", "TCP", "ICMP", "IPOption_RR", "IPOption_Router_Alert"),
        inet6: (
            "IPv6",
            "ICMPv6EchoRequest",
            "ICMPv6EchoReply",
            "ICMPv6ND_NS",
            "ICMPv6ND_NA",
            "ICMPv6DestUnreach",
            "ICMPv6TimeExceeded",
            "ICMPv6PacketTooBig",
            "IPv6ExtHdrHopByHop",
            "IPv6ExtHdrRouting",
            "IPv6ExtHdrFragment",
            "IPv6ExtHdrDestOpt",
        ),
    }
    table: dict[str, Any] = {name: getattr(mod, name) for mod, ns in names.items() for name in ns}
    table.update(Raw=Raw, Padding=Padding)
    return table


def _literal(node: ast.expr) -> object:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise UsageError(f"only literal arguments are accepted, not {ast.unparse(node)!r}") from None
    return value


def parse_expression(text: str) -> Any:
    """A scapy packet from ``Layer(field=literal, ...)/Layer(...)``: the
    expression is parsed, never evaluated; anything else is refused."""
    layers = _layers()
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise UsageError(f"not a scapy expression: {e.msg}") from None

    def build(node: ast.expr) -> Any:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return build(node.left) / build(node.right)
        if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, str)):
            return layers["Raw"](load=node.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            cls = layers.get(node.func.id)
            if cls is None:
                raise UsageError(f"unknown or refused layer {node.func.id!r} (known: {', '.join(sorted(layers))})")
            args = [_literal(a) for a in node.args]
            kwargs = {}
            for kw in node.keywords:
                if kw.arg is None:
                    raise UsageError("'**' arguments are not accepted")
                if kw.arg not in {f.name for f in cls.fields_desc} and kw.arg != "load":
                    raise UsageError(f"{cls.__name__} has no field {kw.arg!r}")
                kwargs[kw.arg] = _literal(kw.value)
            try:
                return cls(*args, **kwargs)
            except Exception as e:  # scapy's own complaint about a value
                raise UsageError(f"{ast.unparse(node)}: {e}") from None
        raise UsageError(f"not accepted in a packet expression: {ast.unparse(node)!r}")

    return build(tree.body)


def packet_bytes(
    iface_mac: str,
    expression: str | None = None,
    *,
    hex_bytes: str | None = None,
    pcap: str | None = None,
    index: int = 0,
) -> bytes:
    """The frame to trace, from exactly one of the three forms."""
    if sum(x is not None for x in (expression, hex_bytes, pcap)) != 1:
        raise UsageError("give one packet: a scapy expression, --hex or --pcap")
    if hex_bytes is not None:
        digits = re.sub(r"[\s:]", "", hex_bytes)
        if not digits or len(digits) % 2 or not set(digits) <= set(string.hexdigits):
            raise UsageError("--hex: an even number of hex digits (spaces and colons ignored)")
        return bytes.fromhex(digits)
    if pcap is not None:
        from scapy.utils import PcapReader

        if not os.path.exists(pcap):
            raise UsageError(f"no such file: {pcap}")
        try:
            with PcapReader(pcap) as reader:
                for i, pkt in enumerate(reader):
                    if i == index:
                        return bytes(pkt)
        except Exception as e:  # scapy: not a capture file
            raise UsageError(f"{pcap}: not a pcap or pcapng file ({e})") from None
        raise UsageError(f"{pcap} has no packet {index}")
    from scapy.layers.l2 import Ether

    assert expression is not None
    pkt = parse_expression(expression)
    if not isinstance(pkt, Ether):
        pkt = Ether(dst=iface_mac, src=DEFAULT_SRC_MAC) / pkt
    return bytes(pkt)


@dataclass
class Hop:
    """Where a frame leaves: interface, next hop, MACs (or why it does not)."""

    egress: str | None = None
    next_hop: str | None = None
    src_mac: str | None = None
    dst_mac: str | None = None
    note: str = ""


@dataclass
class Trace:
    iface: str
    input: str  # hex
    verdict: str
    reason: str | None
    output: str  # hex
    xdp: Hop
    linux: Hop
    linux_route: dict[str, Any] = field(default_factory=dict)
    steer_rule: dict[str, Any] | None = None  # the steering rule that matched ("missed": its target was missing)
    firewall_rules: list[dict[str, Any]] = field(default_factory=list)  # the firewall rules that counted it, in order

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _fields(frame: bytes) -> dict[str, Any]:
    """The lookup's input fields of an IPv4/IPv6 frame (VLAN tags skipped)."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    pkt = Ether(frame)
    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    if ip is None:
        return {}
    out: dict[str, Any] = {"dst": ip.dst, "src": ip.src}
    if isinstance(ip, IP):
        out.update(tos=ip.tos, proto=ip.proto)
    else:
        out.update(tos=ip.tc, proto=ip.nh)
    l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
    if l4 is not None:
        out.update(sport=l4.sport, dport=l4.dport)
    return out


def _xdp_hop(verdict: str, output: bytes, links: list[netlink.Link], ipv6: bool) -> Hop:
    if verdict not in ("redirect", "tx") or len(output) < 12:
        return Hop(note="the kernel's stack decides" if verdict == "pass" else verdict)
    dst, src = _mac(output[0:6]), _mac(output[6:12])
    egress = [link for link in links if link.mac == src]
    hop = Hop(egress=egress[0].name if len(egress) == 1 else None, src_mac=src, dst_mac=dst)
    if hop.egress:
        hop.next_hop = netlink.neighbour_by_mac(egress[0].index, dst, ipv6)
    else:
        hop.note = f"{len(egress)} interfaces have MAC {src}"
    return hop


def _linux_hop(route: dict[str, Any], links: list[netlink.Link]) -> Hop:
    if "error" in route:
        return Hop(note=route["error"])
    if route.get("type") != "unicast":
        return Hop(note=f"{route.get('type')} route: not forwarded")
    by_index = {link.index: link for link in links}
    out = by_index.get(route.get("oif", 0))
    if out is None:
        return Hop(note="no output interface")
    nh = route.get("gateway") or route["dst"]
    return Hop(egress=out.name, next_hop=nh, src_mac=out.mac, dst_mac=netlink.neighbour_mac(out.index, nh))


def trace(router: Router, iface: str, frame: bytes) -> Trace:
    """Run ``frame`` through the fast path as arriving on ``iface``; Linux beside it."""
    links = netlink.links()
    (link,) = netlink.resolve([iface])
    before, fw_before = _steer_counters(), _fw_counters()
    result = router.test_run(frame, iface)
    steer_rule = _steer_rule(before, _steer_counters())
    firewall_rules = _fw_rules(fw_before, _fw_counters())
    fields = _fields(frame)
    route = netlink.route_get(iif=link.index, **fields) if fields else {"error": "not IP: no route lookup"}
    return Trace(
        iface=iface,
        input=frame.hex(),
        verdict=result.action,
        reason=result.reason.name.lower() if result.reason is not None else None,
        output=result.data.hex(),
        xdp=_xdp_hop(result.action, result.data, links, ":" in fields.get("dst", "")),
        linux=_linux_hop(route, links),
        linux_route=route,
        steer_rule=steer_rule,
        firewall_rules=firewall_rules,
    )


_SteerCounts = dict[int, tuple[Any, int, int]]


def _steer_counters() -> _SteerCounts:
    """id -> (rule, steered, missed) of every steering rule (none without the steering maps)."""
    from .steer import Steering

    try:
        return {c.rule.id: (c.rule, c.packets, c.missed) for c in Steering().counters()}
    except UsageError:
        return {}


def _steer_rule(before: _SteerCounts, after: _SteerCounts) -> dict[str, Any] | None:
    """The rule whose counters moved by exactly the traced frame (none if no
    rule did, or other traffic moved several)."""
    moved = []
    for rule_id, (rule, packets, missed) in after.items():
        _, p0, m0 = before.get(rule_id, (rule, packets, missed))
        if (packets - p0, missed - m0) in ((1, 0), (0, 1)):
            moved.append({**rule.as_dict(), "rule": rule.describe(), "missed": missed != m0})
    return moved[0] if len(moved) == 1 else None


_FwCounts = dict[int, tuple[Any, int, int]]


def _fw_counters() -> _FwCounts:
    """id -> (rule, position, packets) of every firewall rule and policy (none without rules)."""
    from .firewall import Firewall

    try:
        return {c.rule.id: (c.rule, c.position, c.packets) for c in Firewall().counters()}
    except UsageError:
        return {}


def _fw_rules(before: _FwCounts, after: _FwCounts) -> list[dict[str, Any]]:
    """The firewall rules whose counters the traced frame moved, in rule
    order: limit rules it was within, then the rule that decided (none if
    other traffic moved them too)."""
    moved = []
    for rule_id, (rule, position, packets) in after.items():
        if packets - before.get(rule_id, (rule, position, packets))[2] == 1:
            moved.append({**rule.as_dict(), "position": position, "rule": rule.describe()})
    return sorted(moved, key=lambda m: m["position"])


def _hop_line(hop: Hop) -> str:
    if hop.egress is None:
        return hop.note
    return f"out {hop.egress} via {hop.next_hop or '?'}  {hop.src_mac} -> {hop.dst_mac or '(no neighbour)'}"


def format_text(t: Trace) -> str:
    lines = [
        f"in {t.iface}: {len(t.input) // 2} bytes",
        f"xdprouter: {t.verdict} ({t.reason or 'reason unknown: other traffic moved the counters'})",
        f"  {_hop_line(t.xdp)}",
        f"linux:     {_hop_line(t.linux)}",
    ]
    for n, r in enumerate(t.firewall_rules):
        lines.insert(2 + n, f"  firewall rule {r['id']} (position {r['position']}): {r['rule']}")
    if t.steer_rule:
        how = "matched, no target (went on as unmatched)" if t.steer_rule["missed"] else "steered"
        lines.insert(2 + len(t.firewall_rules), f"  steering rule {t.steer_rule['id']}: {t.steer_rule['rule']} ({how})")
    if t.verdict in ("redirect", "tx"):
        lines.append(f"output ({len(t.output) // 2} bytes):")
        out = bytes.fromhex(t.output)
        for off in range(0, len(out), 16):
            chunk = out[off : off + 16]
            lines.append(f"  {off:04x}  {chunk.hex(' ')}")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    t = sub.add_parser(
        "trace",
        help="run one packet through the attached fast path (BPF_PROG_RUN); Linux's route beside it",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("iface", metavar="IFACE", help="the ingress interface")
    t.add_argument("packet", nargs="?", metavar="EXPR", help="a scapy expression, e.g. 'IP(dst=\"10.2.0.2\")/UDP()'")
    t.add_argument("--hex", metavar="BYTES", help="the frame as hex")
    t.add_argument("--pcap", metavar="FILE", help="a pcap or pcapng file")
    t.add_argument("--index", type=ranged_int(0, 2**31 - 1), default=0, help="which packet of --pcap (from 0)")
    t.add_argument("--json", action="store_true")


def command(router: Router, args: argparse.Namespace) -> int:
    (link,) = netlink.resolve([args.iface])
    frame = packet_bytes(link.mac, args.packet, hex_bytes=args.hex, pcap=args.pcap, index=args.index)
    t = trace(router, args.iface, frame)
    if args.json:
        print(json.dumps(t.as_dict(), indent=2, default=str))
    else:
        print(format_text(t))
    return 0

"""Random frames for the differential test: structured mutations of valid
IPv4/IPv6 frames sent from h1 to the router, reproducible from a seed.

Each frame is built from independent choices (addresses from pools, TTL,
protocol, header fields, options/extension headers, size), then mutated at
the byte level (header checksum, length fields, IHL, version, truncation at a
header boundary, link-layer padding). Every frame carries its marker
(``<XDPR0042>``) at the start of its payload, like the corpus.

What keeps the two runs of a frame comparable (see test_differential.py):
the kernel keeps per-address state that decides whether it answers, so

* sources are unique per frame (address blocks routed behind h1 and h2, and
  others indexed by the frame number), except addresses the kernel drops
  before it could answer (0/8, 127/8, multicast, limited broadcast, v4-mapped)
  or answers only to itself (the router's addresses); any other fixed address
  (h1, h2, subnet broadcasts, …) is used as a source at most once per run.
  ip_error()'s and the ICMP redirect's token buckets, and ip6_forward()'s 1 s
  redirect limit, then never see the same peer twice in a run;
* IPv6 destinations that send a frame back out of h1's side (redirects,
  limited per destination) and destinations whose neighbour never answers
  are unique per frame too, so neighbour resolution of one frame never
  overlaps another's;
* frames that lose their marker (truncated) never go where an answer comes
  late (unresolved neighbours), because a late answer is assigned by marker;
* no ICMP timestamp requests to the router and no IPv4 timestamp options it
  fills in (both carry its clock), no IPv6 echo requests to it big enough for
  a fragmented reply (the fragment ID is random), no ND/MLD/RS/RA messages
  (they change neighbour state the fast path then uses without confirming it:
  a documented difference, docs/operations.md);
* the classes of test_random.KNOWN_GAPS, where they apply (``Avoid``);
* the documented limitations are not generated: frames bigger than an
  unlocked route MTU metric (the *_MTU routes of corpus.py). Snapshot-at-attach
  differences cannot arise (nothing changes during a run) and ECMP with hash
  policy 1 is only different with a receive hash, which AF_PACKET frames on
  veth do not carry.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    PadN,
    RouterAlert,
)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from . import corpus
from .corpus import H1, H1_6, H2, H2_6, R1, R1_6, R2, R2_6, ROUTE_MTU

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # L4 checksums are computed here
DST_INDEX = 0x8000  # added to the frame index for destinations indexed by it
FRAME_MAX = 1514  # h1's MTU 1500 plus the Ethernet header
# Address blocks the random test adds to the router (besides corpus.ROUTER_ROUTES).
BEHIND_H1_4, BEHIND_H1_6 = "10.128.", "fd10::"  # via h1: unique sources
BEHIND_H2_4, BEHIND_H2_6 = "10.129.", "fd11::"  # via h2: spoofed sources, forwarded destinations
BLACKHOLE_4, BLACKHOLE_6 = "10.130.", "fd30::"
UNREACH_4, UNREACH_6 = "10.131.", "fd31::"
PROHIBIT_4, PROHIBIT_6 = "10.132.", "fd32::"
V4_VIA_V6 = "10.134."  # via inet6 fd02::2
NHID_4, NHID_6 = "10.135.", "fd35::"  # a nexthop object
NHGROUP_4, NHGROUP_6 = "10.136.", "fd36::"  # a nexthop group (h2 and the ECMP gateway)
DEVROUTE_4, DEVROUTE_6 = "10.137.", "fd37::"  # dev veth2 without gateway: nobody answers ARP/ND
THROW_4, THROW_6 = "10.138.", "fd38::"
BACK_6 = "fd60::"  # corpus route via h1 (same interface)
ONLINK_BACK_6 = "fd01::2:"  # on h1's subnet, with permanent neighbours (h1's MAC)
UNRESOLVED_6 = "fd02::7:"  # on h2's subnet, nobody answers
EXTRA_ROUTES = [
    f"route add {BEHIND_H1_4}0.0/16 via {H1}",
    f"route add {BEHIND_H1_6}/64 via {H1_6}",
    f"route add {BEHIND_H2_4}0.0/16 via {H2}",
    f"route add {BEHIND_H2_6}/64 via {H2_6}",
    f"route add blackhole {BLACKHOLE_4}0.0/16",
    f"route add blackhole {BLACKHOLE_6}/64",
    f"route add unreachable {UNREACH_4}0.0/16",
    f"route add unreachable {UNREACH_6}/64",
    f"route add prohibit {PROHIBIT_4}0.0/16",
    f"route add prohibit {PROHIBIT_6}/64",
    f"route add {V4_VIA_V6}0.0/16 via inet6 {H2_6} dev veth2",
    f"nexthop add id 4101 via {H2} dev veth2",
    f"nexthop add id 4102 via {corpus.ECMP_GW4} dev veth2",
    "nexthop add id 4103 group 4101/4102",
    f"nexthop add id 6101 via {H2_6} dev veth2",
    f"nexthop add id 6102 via {corpus.ECMP_GW6} dev veth2",
    "nexthop add id 6103 group 6101/6102",
    f"route add {NHID_4}0.0/16 nhid 4101",
    f"route add {NHID_6}/64 nhid 6101",
    f"route add {NHGROUP_4}0.0/16 nhid 4103",
    f"route add {NHGROUP_6}/64 nhid 6103",
    f"route add {DEVROUTE_4}0.0/16 dev veth2",
    f"route add {DEVROUTE_6}/64 dev veth2",
    f"route add throw {THROW_4}0.0/16",
    f"route add throw {THROW_6}/64",
]


def onlink_back6(index: int) -> str:
    """An address on h1's subnet the router has a permanent neighbour for."""
    return f"{ONLINK_BACK_6}{index:x}"


def extra_neighbours(count: int) -> list[tuple[str, str]]:
    """(address, interface) of the permanent neighbours ``count`` frames may use, besides the corpus's."""
    return [(onlink_back6(i), "veth1") for i in range(count)]


def v4(prefix: str, index: int) -> str:
    """``prefix`` (two octets and a dot) + two octets from ``index``: unique per frame."""
    return f"{prefix}{(index >> 8) & 0xFF}.{index & 0xFF}"


def v6(prefix: str, index: int) -> str:
    return f"{prefix}{index + 1:x}"


@dataclass(frozen=True)
class Addr:
    value: str
    label: str
    once: bool = False  # a fixed address the kernel may answer: once per run
    late: bool = False  # as a destination: the answer (if any) comes after neighbour resolution fails
    back: bool = False  # as a destination: routed back out of h1's side
    mtu_route: bool = False  # behind an unlocked route MTU metric (known limitation)


Pick = Callable[[int], Addr]
Pool = list[tuple[float, Pick]]


def _fixed(value: str, label: str, once: bool = False) -> Pick:
    return lambda i: Addr(value, label, once=once)


def _indexed4(prefix: str, label: str, **kw: bool) -> Pick:
    return lambda i: Addr(v4(prefix, i + 1), label, **kw)


def _indexed6(prefix: str, label: str, **kw: bool) -> Pick:
    return lambda i: Addr(v6(prefix, i), label, **kw)


def _host_in(net: str, label: str, rng: random.Random, **kw: bool) -> Pick:
    """A random address of ``net`` (shared by frames: only for destinations)."""
    n = ipaddress.ip_network(net)
    return lambda i: Addr(str(n.network_address + rng.randrange(1, min(n.num_addresses - 1, 1 << 16))), label, **kw)


def _src4_pool() -> Pool:
    return [
        (30, _indexed4(BEHIND_H1_4, "s:behind-h1")),
        (12, lambda i: Addr(corpus.src4(i), "s:onlink-h1") if i < corpus.MAX_FRAMES else _pick_behind_h1(i)),
        (8, _indexed4(BEHIND_H2_4, "s:behind-h2")),
        (4, lambda i: Addr(v4("198.18.", i), "s:unrouted")),
        (3, _indexed4(BLACKHOLE_4, "s:blackholed")),
        (2, _indexed4(UNREACH_4, "s:unreachable")),
        (3, lambda i: Addr(v4("240.0.", i), "s:class-e")),
        (2, lambda i: Addr(v4("0.0.", i), "s:0/8")),
        (1, _fixed("0.0.0.0", "s:0.0.0.0")),
        (2, lambda i: Addr(v4("127.0.", i), "s:127/8")),
        (2, lambda i: Addr(v4("224.0.", i), "s:multicast")),
        (1, _fixed("255.255.255.255", "s:lbcast")),
        (2, _fixed(R1, "s:router-veth1")),
        (1, _fixed(R2, "s:router-veth2")),
        (1, _fixed(corpus.LOCAL_ROUTE4, "s:local-route", once=True)),
        (1, _fixed(H1, "s:h1", once=True)),
        (1, _fixed(H2, "s:h2", once=True)),
        (1, _fixed("10.1.0.255", "s:ingress-bcast", once=True)),
        (1, _fixed("10.2.0.255", "s:egress-bcast", once=True)),
        (1, _fixed("10.1.0.0", "s:ingress-net", once=True)),
        (1, _fixed("10.2.0.0", "s:egress-net", once=True)),
        (1, _fixed("169.254.0.7", "s:link-local", once=True)),
    ]


def _pick_behind_h1(i: int) -> Addr:
    return Addr(v4(BEHIND_H1_4, i + 1), "s:behind-h1")


def _pick_behind_h1_6(i: int) -> Addr:
    return Addr(v6(BEHIND_H1_6, i), "s:behind-h1")


def _src6_pool() -> Pool:
    return [
        (30, _indexed6(BEHIND_H1_6, "s:behind-h1")),
        (10, lambda i: Addr(corpus.src6(i), "s:onlink-h1") if i < corpus.MAX_FRAMES else _pick_behind_h1_6(i)),
        (8, _indexed6(BEHIND_H2_6, "s:behind-h2")),
        (4, _indexed6("2001:db8:1::", "s:unrouted")),
        (3, _indexed6("fdaa::", "s:ula-unrouted")),
        (2, _indexed6(BLACKHOLE_6, "s:blackholed")),
        (3, _indexed6("fe80::7:", "s:link-local")),
        (1, _fixed(corpus.LINK_LOCAL_SOURCES[0], "s:link-local-neigh", once=True)),
        (2, _indexed6("ff0e::", "s:multicast")),
        (2, lambda i: Addr("::ffff:" + v4("10.1.", i), "s:v4-mapped")),
        (1, lambda i: Addr("::" + v4("10.3.", i + 1), "s:v4-compat")),
        (1, _indexed6("fec0::", "s:site-local")),
        (1, _fixed("::", "s:any", once=True)),
        (1, _fixed("::1", "s:loopback")),
        (1, _fixed(R1_6, "s:router-veth1", once=True)),
        (1, _fixed(R2_6, "s:router-veth2", once=True)),
        (1, _fixed(H1_6, "s:h1", once=True)),
        (1, _fixed(H2_6, "s:h2", once=True)),
        (1, _fixed("fd02::", "s:anycast", once=True)),
    ]


def _dst4_pool(rng: random.Random) -> Pool:
    return [
        (14, _fixed(H2, "d:h2")),
        (10, _host_in(corpus.REMOTE4[:-1] + "0/24", "d:via-h2", rng)),
        (6, _indexed4(BEHIND_H2_4, "d:behind-h2")),
        (6, _host_in(corpus.ECMP4 + "0/24", "d:ecmp", rng)),
        (3, _host_in(corpus.MTU4[:-1] + "0/24", "d:route-mtu", rng, mtu_route=True)),
        (3, _host_in(corpus.MTU_LOCK4[:-1] + "0/24", "d:route-mtu-lock", rng)),
        (4, _host_in(corpus.BACK4[:-1] + "0/24", "d:back-via-h1", rng, back=True)),
        (3, lambda i: Addr(corpus.src4(i % corpus.MAX_FRAMES), "d:back-onlink", back=True)),
        (3, _indexed4(BEHIND_H1_4, "d:behind-h1")),
        (3, _indexed4(BLACKHOLE_4, "d:blackhole")),
        (3, _indexed4(UNREACH_4, "d:unreachable")),
        (3, _indexed4(PROHIBIT_4, "d:prohibit")),
        (3, lambda i: Addr(f"192.0.2.{i % 250 + 1}", "d:no-route")),
        (2, lambda i: Addr(f"10.2.0.{100 + (i - DST_INDEX) % 150}", "d:unresolved", late=True)),
        (2, _indexed4(DEVROUTE_4, "d:dev-route-unresolved", late=True)),
        (3, _indexed4(V4_VIA_V6, "d:via-inet6")),
        (3, _indexed4(NHID_4, "d:nexthop")),
        (4, _indexed4(NHGROUP_4, "d:nexthop-group")),
        (2, _indexed4(THROW_4, "d:throw")),
        (2, _fixed(corpus.RULE_TABLE4, "d:rule-table")),
        (1, _fixed(corpus.RULE_PROHIBIT4, "d:rule-prohibit")),
        (4, _fixed(R1, "d:router-veth1")),
        (3, _fixed(R2, "d:router-veth2")),
        (2, _fixed(corpus.LOCAL_ROUTE4, "d:local-route")),
        (1, _fixed("10.1.0.255", "d:ingress-bcast")),
        (1, _fixed("10.2.0.255", "d:egress-bcast")),
        (1, _fixed("10.2.0.0", "d:egress-net")),
        (1, _fixed("255.255.255.255", "d:lbcast")),
        (1, _fixed("0.0.0.0", "d:0.0.0.0")),
        (1, lambda i: Addr(v4("0.0.", i), "d:0/8")),
        (1, _fixed("127.0.0.1", "d:127/8")),
        (1, _fixed("224.0.0.1", "d:all-hosts")),
        (1, _fixed("239.1.2.3", "d:multicast")),
        (2, lambda i: Addr(v4("240.0.", i), "d:class-e")),
        (1, _fixed("169.254.0.9", "d:link-local")),
    ]


def _dst6_pool(rng: random.Random) -> Pool:
    return [
        (14, _fixed(H2_6, "d:h2")),
        (10, _indexed6(corpus.REMOTE6[:-1], "d:via-h2")),
        (6, _indexed6(BEHIND_H2_6, "d:behind-h2")),
        (6, _indexed6(corpus.ECMP6, "d:ecmp")),
        (3, _indexed6(corpus.MTU6[:-1], "d:route-mtu", mtu_route=True)),
        (3, _indexed6(corpus.MTU_LOCK6[:-1], "d:route-mtu-lock")),
        (4, _indexed6(BACK_6, "d:back-via-h1", back=True)),
        (3, lambda i: Addr(onlink_back6(i - DST_INDEX), "d:back-onlink", back=True)),
        (3, _indexed6(BEHIND_H1_6, "d:behind-h1")),
        (3, _indexed6(BLACKHOLE_6, "d:blackhole")),
        (3, _indexed6(UNREACH_6, "d:unreachable")),
        (3, _indexed6(PROHIBIT_6, "d:prohibit")),
        (3, _indexed6(corpus.NOWHERE6[:-1], "d:no-route")),
        (2, _indexed6(UNRESOLVED_6, "d:unresolved", late=True)),
        (2, _indexed6(DEVROUTE_6, "d:dev-route-unresolved", late=True)),
        (3, _indexed6(NHID_6, "d:nexthop")),
        (4, _indexed6(NHGROUP_6, "d:nexthop-group")),
        (2, _indexed6(THROW_6, "d:throw")),
        (2, _indexed6(corpus.RULE_TABLE6[:-1], "d:rule-table")),
        (1, _indexed6(corpus.RULE_PROHIBIT6[:-1], "d:rule-prohibit")),
        (3, _fixed(R1_6, "d:router-veth1")),
        (3, _fixed(R2_6, "d:router-veth2")),
        (1, _fixed("fd02::", "d:anycast")),
        (1, _fixed("fd01::", "d:anycast-ingress")),
        (2, _indexed6("fdaa::", "d:ula-unrouted")),
        (1, _indexed6("fec0::", "d:site-local")),
        (1, _fixed("::", "d:any")),
        (1, _fixed("::1", "d:loopback")),
        (1, lambda i: Addr("::ffff:" + v4("10.2.", i), "d:v4-mapped")),
        (2, _indexed6("fe80::9:", "d:link-local", late=True)),  # the router resolves it on h1's side
        *[(1, _fixed(f"ff{s}::1:2", f"d:mcast-ff{s}")) for s in ("00", "01", "02", "05", "0e", "0f")],
        (1, _fixed("ff02::1", "d:all-nodes")),
    ]


def _choose(rng: random.Random, pool: Pool) -> Pick:
    return rng.choices([p for _, p in pool], weights=[w for w, _ in pool])[0]


def _ttl(rng: random.Random) -> int:
    return rng.choices(
        [0, 1, 2, 3, 64, 255, rng.randrange(256)],
        weights=[8, 12, 8, 2, 40, 10, 20],
    )[0]


@dataclass
class Spec:
    """The choices a frame was made of: its name in reports."""

    parts: list[str] = field(default_factory=list)

    def add(self, part: str) -> None:
        self.parts.append(part)

    def __str__(self) -> str:
        return " ".join(self.parts)


def _payload(marker: bytes, rng: random.Random, size: int) -> bytes:
    filler = bytes(rng.randrange(256) for _ in range(min(size, 32)))
    body = marker + (filler * (size // max(1, len(filler)) + 1) if filler else b"")
    return body[: max(len(marker), size)]


MULTIPATH = ("d:ecmp", "d:nexthop-group")
LOCAL6 = ("d:router", "d:anycast")
IPV6_MIN_MTU = 1280


@dataclass(frozen=True)
class Avoid:
    """Known gaps (test_random.KNOWN_GAPS) the generator must not produce."""

    spi_multipath: bool = False  # ESP/AH to a multipath route (L4 hash policy)
    tx_without_marker: bool = False  # a frame sent back out of h1's side whose datagram loses its marker


class Generator:
    """Frames from one seed; ``frame(i)`` is reproducible for a given seed."""

    def __init__(self, seed: int, macs: corpus.Macs, avoid: Avoid = Avoid()) -> None:
        self.seed = seed
        self.macs = macs
        self.avoid = avoid
        self.rng = random.Random(seed)
        self.used_once: set[str] = set()
        self.keep_marker = False
        self.src4, self.src6 = _src4_pool(), _src6_pool()
        self.dst4, self.dst6 = _dst4_pool(self.rng), _dst6_pool(self.rng)

    # --- addresses -----------------------------------------------------------
    def _source(self, i: int, ipv6: bool) -> Addr:
        addr = _choose(self.rng, self.src6 if ipv6 else self.src4)(i)
        if addr.once and addr.value in self.used_once:
            return _pick_behind_h1_6(i) if ipv6 else _pick_behind_h1(i)
        if addr.once:
            self.used_once.add(addr.value)
        return addr

    def _destination(self, i: int, ipv6: bool) -> Addr:
        # indexed destinations never equal indexed sources
        return _choose(self.rng, self.dst6 if ipv6 else self.dst4)(DST_INDEX + i)

    # --- layer 4 ---------------------------------------------------------------
    def _l4_v4(self, spec: Spec, i: int, dst: Addr, marker: bytes) -> tuple[int, bytes]:
        """(protocol, bytes after the IP header up to and including the marker)."""
        rng = self.rng
        kind = rng.choices(
            ["udp", "tcp", "icmp", "icmp-error", "sctp", "gre", "esp", "ah", "udplite", "dccp", "ipip", "unknown"],
            weights=[26, 16, 12, 8, 4, 4, 4, 3, 2, 2, 2, 5],
        )[0]
        if kind in ("esp", "ah") and self.avoid.spi_multipath and dst.label in MULTIPATH:
            kind = "udp"
        spec.add(kind)
        sport, dport = self._ports()
        if kind == "udp":
            return 17, struct.pack("!HHHH", sport, dport, 0, rng.choice([0, 1, 1])) + marker  # 0: no checksum
        if kind == "tcp":
            flags = rng.choice(["S", "SA", "A", "PA", "R", "F", "", "SFRPAUEC"])
            return 6, bytes(TCP(sport=sport, dport=dport, flags=flags, seq=rng.getrandbits(32)) / Raw(marker))
        if kind == "icmp":
            icmp_type = rng.choice([0, 8, 8, 8, 13, 15, 17, 42, 77, 200, 255])
            if icmp_type == 13 and dst.label.startswith(("d:router", "d:local", "d:ingress", "d:egress", "d:lbcast")):
                icmp_type = 8  # the reply would carry the router's clock
            spec.add(f"type={icmp_type}")
            return 1, bytes(ICMP(type=icmp_type, code=rng.choice([0, 0, 1]), id=i, seq=1) / Raw(marker))
        if kind == "icmp-error":
            icmp_type, code = rng.choice(
                [(3, 0), (3, 1), (3, 3), (3, 4), (3, 13), (4, 0), (5, 1), (11, 0), (11, 1), (12, 0)]
            )
            spec.add(f"type={icmp_type}/{code}")
            inner_dst = self._destination(i, False).value
            inner = IP(src=self.rng.choice([dst.value, H2, R1]), dst=inner_dst, ttl=1, proto=rng.choice([17, 1, 6]))
            rest = struct.pack("!HH", 0, rng.choice([0, 576, 1280, 1300, 1400])) if icmp_type == 3 else bytes(4)
            if icmp_type == 5:
                rest = ipaddress.ip_address(rng.choice([H1, corpus.src4(1), H2])).packed
            quote = bytes(inner / Raw(struct.pack("!HH", 33434, 53) + bytes(4) + marker))
            if rng.random() < 0.2:
                quote = quote[: rng.choice([8, 20, 28])] + marker
            message = bytes([icmp_type, code, 0, 0]) + rest + quote
            return 1, message[:2] + struct.pack("!H", _checksum(message)) + message[4:]
        if kind == "sctp":
            return 132, struct.pack("!HHI", sport, dport, rng.getrandbits(32)) + bytes(4) + marker
        if kind == "gre":
            return 47, rng.choice([b"\x00\x00\x08\x00", b"\x00\x00\x86\xdd", b"\x20\x00\x65\x58" + bytes(4)]) + marker
        if kind == "esp":
            return 50, struct.pack("!II", rng.getrandbits(32), rng.getrandbits(32)) + marker
        if kind == "ah":
            return 51, bytes([17, 4, 0, 0]) + struct.pack("!II", rng.getrandbits(32), 1) + bytes(12) + marker
        if kind == "udplite":
            return 136, struct.pack("!HHHH", sport, dport, 8, 0) + marker
        if kind == "dccp":
            return 33, struct.pack("!HH", sport, dport) + bytes(12) + marker
        if kind == "ipip":
            return 4, bytes(IP(src="192.0.2.77", dst="198.51.100.77") / UDP() / Raw(marker))
        proto = rng.choice([0, 2, 41, 59, 103, 143, 253, 255])
        spec.add(f"proto={proto}")
        return proto, marker

    def _ports(self) -> tuple[int, int]:
        rng = self.rng
        pick = [0, 7, 9, 22, 53, 80, 123, 443, corpus.RULE_BLACKHOLE_PORT, 33434, 65535]
        sport = rng.choice(pick) if rng.random() < 0.3 else rng.randrange(1024, 65536)
        dport = rng.choice(pick) if rng.random() < 0.7 else rng.randrange(65536)
        return sport, dport

    def _l4_v6(self, spec: Spec, i: int, dst: Addr, marker: bytes) -> tuple[int, bytes]:
        rng = self.rng
        kind = rng.choices(
            ["udp", "tcp", "icmp6", "icmp6-error", "sctp", "gre", "esp", "udplite", "dccp", "ipip", "unknown"],
            weights=[26, 16, 12, 8, 4, 3, 4, 2, 2, 2, 5],
        )[0]
        if kind == "esp" and self.avoid.spi_multipath and dst.label in MULTIPATH:
            kind = "udp"
        spec.add(kind)
        sport, dport = self._ports()
        if kind == "udp":
            return 17, struct.pack("!HHHH", sport, dport, 0, 1) + marker
        if kind == "tcp":
            flags = rng.choice(["S", "SA", "A", "PA", "R", "F", ""])
            return 6, bytes(TCP(sport=sport, dport=dport, flags=flags, seq=rng.getrandbits(32)) / Raw(marker))
        if kind == "icmp6":
            msg = rng.choice([ICMPv6EchoRequest, ICMPv6EchoRequest, ICMPv6EchoReply])(id=i, seq=1)
            if rng.random() < 0.2:  # an informational type nobody implements
                return 58, bytes([rng.choice([150, 200, 255]), 0, 0, 0]) + bytes(4) + marker
            return 58, bytes(msg / Raw(marker))
        if kind == "icmp6-error":
            msg = rng.choice(
                [
                    lambda: ICMPv6DestUnreach(code=rng.choice([0, 1, 3, 4])),
                    lambda: ICMPv6PacketTooBig(mtu=rng.choice([1280, 1300, 1400, 1500])),
                    lambda: ICMPv6TimeExceeded(code=rng.choice([0, 1])),
                    lambda: ICMPv6ParamProblem(code=rng.choice([0, 1, 2]), ptr=6),
                ]
            )()
            spec.add(msg.name.split()[-1] if msg.name else "err")
            inner_dst = self._destination(i, True).value
            inner = IPv6(src=rng.choice([dst.value, H2_6, R1_6]), dst=inner_dst, nh=rng.choice([17, 58]), hlim=1)
            quote = bytes(inner) + struct.pack("!HHHH", 33434, 53, 8, 0) + marker
            if rng.random() < 0.2:
                quote = quote[: rng.choice([8, 40, 48])] + marker
            return 58, bytes(msg / Raw(quote))
        if kind == "sctp":
            return 132, struct.pack("!HHI", sport, dport, rng.getrandbits(32)) + bytes(4) + marker
        if kind == "gre":
            return 47, b"\x00\x00\x86\xdd" + marker
        if kind == "esp":
            return 50, struct.pack("!II", rng.getrandbits(32), rng.getrandbits(32)) + marker
        if kind == "udplite":
            return 136, struct.pack("!HHHH", sport, dport, 8, 0) + marker
        if kind == "dccp":
            return 33, struct.pack("!HH", sport, dport) + bytes(12) + marker
        if kind == "ipip":
            return 41, bytes(IPv6(src="2001:db8::77", dst="2001:db8::78") / UDP() / Raw(marker))
        proto = rng.choice([2, 4, 59, 103, 143, 200, 255])
        spec.add(f"nh={proto}")
        return proto, marker

    # --- the frame -------------------------------------------------------------
    def frame(self, i: int) -> corpus.Frame:
        rng = self.rng
        spec = Spec()
        ipv6 = rng.random() < 0.45
        spec.add("v6" if ipv6 else "v4")
        src, dst = self._source(i, ipv6), self._destination(i, ipv6)
        spec.add(f"{src.label}={src.value}")
        spec.add(f"{dst.label}={dst.value}")
        marker = corpus.marker(i)
        ttl = _ttl(rng)
        spec.add(f"ttl={ttl}")
        eth = self._ether(spec, ipv6)
        budget = FRAME_MAX - len(eth)
        if ipv6:
            l3, l3_len, hdr_ends = self._ipv6(spec, i, src, dst, ttl, marker, budget)
        else:
            l3, l3_len, hdr_ends = self._ipv4(spec, i, src, dst, ttl, marker, budget)
        self.keep_marker = self._late(dst, "frag=" in str(spec) or "Fragment" in str(spec))
        data = eth + l3
        boundaries = [len(eth) + b for b in hdr_ends]
        data = self._truncate_or_pad(spec, data, len(eth) + l3_len, boundaries, dst)
        return corpus.Frame(f"[{i}] {spec}", data[:FRAME_MAX])

    def _ether(self, spec: Spec, ipv6: bool) -> bytes:
        rng = self.rng
        m = self.macs
        dst = rng.choices(
            [m.r1, "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "33:33:00:00:00:01", "02:00:00:00:00:99", m.r2, m.h1],
            weights=[88, 2, 2, 2, 2, 2, 2],
        )[0]
        if dst != m.r1:
            spec.add(f"mac={dst}")
        ethertype = 0x86DD if ipv6 else 0x0800
        if rng.random() < 0.02:
            ethertype = 0x0800 if ipv6 else 0x86DD
            spec.add("ethertype-swapped")
        if rng.random() < 0.02:
            spec.add("vlan0")
            return bytes(Ether(dst=dst, src=m.h1) / Dot1Q(vlan=0, type=ethertype))
        return bytes(Ether(dst=dst, src=m.h1, type=ethertype))

    def _size(self, spec: Spec, dst: Addr, base: int, budget: int, ipv6: bool = False) -> int:
        """The IP datagram length to aim for: mostly as built, sometimes around the egress MTU."""
        rng = self.rng
        if rng.random() < 0.8:
            return base
        mtu = corpus.EGRESS_MTU
        size = rng.choice([mtu - 1, mtu, mtu + 1, mtu + 2, mtu + 60, 1499, 1500, ROUTE_MTU, ROUTE_MTU + 2])
        if dst.mtu_route:
            size = min(size, ROUTE_MTU)  # bigger: the documented unlocked route MTU gap
        if ipv6 and dst.label.startswith(LOCAL6):
            # the router's answer (echo reply) could need fragmenting, and the
            # IPv6 fragment ID it chooses is random: not comparable between runs
            size = min(size, IPV6_MIN_MTU)
        size = min(size, budget)
        spec.add(f"size={size}")
        return max(size, base)

    def _ipv4(
        self, spec: Spec, i: int, src: Addr, dst: Addr, ttl: int, marker: bytes, budget: int
    ) -> tuple[bytes, int, list[int]]:
        rng = self.rng
        proto, l4 = self._l4_v4(spec, i, dst, marker)
        options = b""
        if rng.random() < 0.08:
            options = rng.choice(
                [
                    b"\x07\x0b\x04" + bytes(8),  # record route
                    b"\x94\x04\x00\x00",  # router alert
                    # timestamps only where the router writes none (full, or another
                    # router's prespecified address): otherwise it writes its clock
                    b"\x44\x0c\x0d\x00" + bytes(8),
                    b"\x44\x0c\x05\x03" + bytes([192, 0, 2, 9]) + bytes(4),
                    b"\x83\x07\x04" + bytes([10, 50, 0, 5]) + b"\x00",  # lsrr
                    b"\x89\x07\x04" + bytes([10, 50, 0, 5]) + b"\x00",  # ssrr
                    b"\x01\x01\x01\x00",  # nops, eol
                    b"\x1e\x04\x00\x00",  # unknown
                    b"\x07\x02\x00\x00",  # bad length
                    bytes(40),  # 40 bytes of EOL
                ]
            )
            spec.add(f"opts={options[:1].hex()}")
        flags, frag = 0, 0
        r = rng.random()
        if r < 0.35:
            flags = 2  # DF
        elif r < 0.45:
            flags, frag = rng.choice([(1, 0), (1, rng.randrange(1, 200)), (0, rng.randrange(1, 8192)), (3, 0), (4, 0)])
            spec.add(f"flags={flags} frag={frag}")
        tos = rng.choice([0, 0, 0, 0xB9, 0x03, 0x10, rng.randrange(256)])
        if tos:
            spec.add(f"tos={tos:#x}")
        options += bytes(-len(options) % 4)
        ihl = 20 + len(options)
        size = self._size(spec, dst, ihl + len(l4), budget)
        if size > ihl + len(l4):
            l4 = _payload(l4, rng, size - ihl)

        fields = (0x40 | ihl // 4, tos, ihl + len(l4), rng.randrange(65536), flags << 13 | frag, ttl, proto, 0)
        addrs = ipaddress.IPv4Address(src.value).packed + ipaddress.IPv4Address(dst.value).packed
        l4 = self._l4_checksum(spec, proto, addrs, l4)
        packet = bytearray(struct.pack("!BBHHHBBH", *fields) + addrs + options + l4)
        tot_len = len(packet)
        # header fields the builder would get right
        r = rng.random()
        if r < 0.06:
            new = rng.choice([0, 1, 19, 20, ihl, tot_len - 1, tot_len - 8, tot_len + 1, tot_len + 40, 65535])
            if self._late(dst, flags & 1 or frag) and 20 <= new < tot_len:
                new = tot_len
            spec.add(f"tot_len={new}(real {tot_len})")
            struct.pack_into("!H", packet, 2, max(0, new) & 0xFFFF)
        elif r < 0.12 and tot_len > ihl + 8:
            new = rng.randrange(ihl, tot_len)  # shorter: the rest is link-layer padding
            if self._late(dst, flags & 1 or frag):
                new = max(new, packet.find(marker) + len(marker))
            spec.add(f"tot_len={new}(real {tot_len})")
            struct.pack_into("!H", packet, 2, new)
        if rng.random() < 0.03:
            new_ihl = rng.choice([0, 4, 6, 7, 15])
            spec.add(f"ihl={new_ihl}")
            packet[0] = 0x40 | new_ihl
        if rng.random() < 0.015:
            version = rng.choice([0, 5, 6, 15])
            spec.add(f"version={version}")
            packet[0] = (version << 4) | (packet[0] & 0xF)
        struct.pack_into("!H", packet, 10, 0)
        csum = _checksum(bytes(packet[: max(20, (packet[0] & 0xF) * 4)]))
        if rng.random() < 0.06:
            csum = rng.choice([0, 0xFFFF, csum ^ 0x0100, csum ^ 0x0001, rng.randrange(65536)])
            spec.add("bad-csum")
        struct.pack_into("!H", packet, 10, csum)
        ends = [1, 2, 4, 9, 10, 12, 16, 20, ihl, ihl + 4, ihl + 8]
        return bytes(packet), struct.unpack_from("!H", packet, 2)[0], ends

    def _ipv6(
        self, spec: Spec, i: int, src: Addr, dst: Addr, hlim: int, marker: bytes, budget: int
    ) -> tuple[bytes, int, list[int]]:
        rng = self.rng
        proto, l4 = self._l4_v6(spec, i, dst, marker)
        exts: list[Packet] = []
        fragment = False
        if rng.random() < 0.12:
            for _ in range(rng.choice([1, 1, 2, 3])):
                exts.append(
                    rng.choice(
                        [
                            lambda: IPv6ExtHdrHopByHop(options=[PadN(optdata=bytes(4))]),
                            lambda: IPv6ExtHdrHopByHop(options=[RouterAlert()]),
                            lambda: IPv6ExtHdrDestOpt(options=[PadN(optdata=bytes(4))]),
                            lambda: IPv6ExtHdrRouting(addresses=[corpus.REMOTE6], segleft=rng.choice([0, 1])),
                            lambda: IPv6ExtHdrSegmentRouting(addresses=[corpus.REMOTE6, H2_6], segleft=1),
                            lambda: IPv6ExtHdrFragment(m=rng.choice([0, 1]), offset=rng.choice([0, 0, 5]), id=i),
                        ]
                    )()
                )
            spec.add("ext=" + "/".join(type(e).__name__.removeprefix("IPv6ExtHdr") for e in exts))
        fragment = any(isinstance(e, IPv6ExtHdrFragment) for e in exts)
        tc = rng.choice([0, 0, 0, 0xB9, 0x03, rng.randrange(256)])
        fl = rng.choice([0, 0, 1, 0xABCDE, rng.randrange(1 << 20)])
        if tc or fl:
            spec.add(f"tc={tc:#x} fl={fl:#x}")
        # scapy fills each nh from the layer after it; the last one is the L4 protocol
        (exts[-1] if exts else IPv6()).nh = proto
        chain: Packet = IPv6(src=src.value, dst=dst.value, hlim=hlim, tc=tc, fl=fl, nh=None if exts else proto)
        for ext in exts:
            chain = chain / ext
        headers = bytes(chain)
        size = self._size(spec, dst, len(headers) + len(l4), budget, ipv6=True)
        if size > len(headers) + len(l4):
            l4 = _payload(l4, rng, size - len(headers))
        l4 = self._l4_checksum(spec, proto, headers[8:40], l4)
        packet = headers[:4] + struct.pack("!H", len(headers) - 40 + len(l4)) + headers[6:] + l4
        packet = bytearray(packet)
        plen = len(packet) - 40
        r = rng.random()
        if r < 0.06:
            new = rng.choice([0, 1, 7, 8, plen - 1, plen + 1, plen + 40, 65535])
            if self._late(dst, fragment) and 0 < new < plen:
                new = plen
            spec.add(f"plen={new}(real {plen})")
            struct.pack_into("!H", packet, 4, max(0, new) & 0xFFFF)
        elif r < 0.12 and plen > 8:
            new = rng.randrange(1, plen)
            if self._late(dst, fragment):
                new = max(new, packet.find(marker) + len(marker) - 40)
            spec.add(f"plen={new}(real {plen})")
            struct.pack_into("!H", packet, 4, new)
        if rng.random() < 0.015:
            version = rng.choice([0, 4, 7, 15])
            spec.add(f"version={version}")
            packet[0] = (version << 4) | (packet[0] & 0xF)
        ends = [1, 4, 6, 7, 8, 24, 40, len(headers), len(headers) + 4, len(headers) + 8]
        return bytes(packet), 40 + struct.unpack_from("!H", packet, 4)[0], ends

    def _late(self, dst: Addr, fragment: object) -> bool:
        """Whether this frame's output may come late, after the next ones were
        sent (neighbour resolution failing, a fragment's reassembly timing out,
        an XDP_TX on veth): then it must carry the marker to find its frame."""
        return dst.late or bool(fragment) or (dst.back and self.avoid.tx_without_marker)

    def _l4_checksum(self, spec: Spec, proto: int, addrs: bytes, l4: bytes) -> bytes:
        """Set UDP's length and the TCP/UDP/ICMP/ICMPv6 checksum for the final
        payload (the pseudo-header takes ``addrs``, source then destination);
        now and then a wrong one."""
        offset = {6: 16, 17: 6, 1: 2, 58: 2}.get(proto)
        if offset is None or len(l4) < offset + 2:
            return l4
        data = bytearray(l4)
        if proto == 17:
            struct.pack_into("!H", data, 4, len(data))
        if proto == 17 and len(addrs) == 8 and data[6:8] == b"\0\0":
            return bytes(data)  # UDP without a checksum (IPv4 only)
        data[offset : offset + 2] = b"\0\0"
        if proto == 1:
            pseudo = b""
        elif len(addrs) == 8:
            pseudo = addrs + struct.pack("!BBH", 0, proto, len(data))
        else:
            pseudo = addrs + struct.pack("!IxxxB", len(data), proto)
        csum = _checksum(pseudo + bytes(data) + b"\0" * (len(data) % 2))
        if proto == 17 and csum == 0:
            csum = 0xFFFF
        if self.rng.random() < 0.05:
            csum ^= 0x5A5A
            spec.add("bad-l4-csum")
        struct.pack_into("!H", data, offset, csum)
        return bytes(data)

    def _truncate_or_pad(self, spec: Spec, data: bytes, l3_end: int, boundaries: list[int], dst: Addr) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.10:
            cut = rng.choice([14, *[b for b in boundaries if 14 < b < len(data)]] or [14])
            if self.keep_marker:
                return data  # the marker would go, and this frame's answer may come late
            spec.add(f"truncated@{cut}")
            return data[:cut]
        if r < 0.25 and len(data) < FRAME_MAX:
            pad = min(FRAME_MAX - len(data), rng.choice([1, 2, 6, 26, 46, 60]))
            fill = rng.choice([b"\x00", b"\xee", None])
            spec.add(f"pad={pad}")
            return data + (fill * pad if fill else bytes(rng.randrange(256) for _ in range(pad)))
        return data


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header[: len(header) // 2 * 2]))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def generate(seed: int, count: int, macs: corpus.Macs, avoid: Avoid = Avoid()) -> list[corpus.Frame]:
    gen = Generator(seed, macs, avoid)
    return [gen.frame(i) for i in range(count)]

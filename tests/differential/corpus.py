"""The frames of the differential test, and the lab they are written for.

Every frame is sent from h1 towards the router. Each carries a marker
(``<XDPR0042>``) at the start of its payload, where ICMP errors quote it, and
most use a source address of their own (``10.1.0.<10+i>``, ``fd01::1:<i>``) so
the kernel's per-peer limits on ICMP errors and redirects (route/error_cost,
redirect_load, inet_peer token buckets) see each frame as a new peer and act
the same in both runs.

The router of this corpus has, besides the lab's two subnets:

* veth2's MTU at 1400, routes with an MTU metric (plain and locked),
* blackhole, unreachable and prohibit routes for both families,
* a gateway route behind h2, a route back out of veth1 (ICMP redirects),
* a route to a gateway that never answers ARP/ND (neighbour failure),
* in the "custom" variant, a ``local`` route (AnyIP) and policy rules, which
  turn on the kernel's full source validation in fib_validate_source().
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    PadN,
    RouterAlert,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

H1, H2, R1, R2 = "10.1.0.2", "10.2.0.2", "10.1.0.1", "10.2.0.1"
H1_6, H2_6, R1_6, R2_6 = "fd01::2", "fd02::2", "fd01::1", "fd02::1"
EGRESS_MTU = 1400  # the router's veth2
ROUTE_MTU = 1300  # the MTU metric of the *_MTU routes
SRC4_BASE = 10  # frame i comes from 10.1.0.<SRC4_BASE + i>
MAX_FRAMES = 240
LINK_LOCAL_SOURCES = ("fe80::5", "fe80::6")  # the router has neighbours for them

# Destinations, one per kind of route the router has.
REMOTE4, REMOTE6 = "10.50.0.5", "fd50::5"  # via h2
BACK4, BACK6 = "10.60.0.5", "fd60::5"  # via h1: out of the interface it came in
MTU4, MTU6 = "10.80.0.5", "fd80::5"  # via h2, route mtu 1300
MTU_LOCK4, MTU_LOCK6 = "10.81.0.5", "fd81::5"  # via h2, route mtu lock 1300
BLACKHOLE4, BLACKHOLE6 = "10.99.0.5", "fd99::5"
UNREACHABLE4, UNREACHABLE6 = "10.98.0.5", "fd98::5"
PROHIBIT4, PROHIBIT6 = "10.97.0.5", "fd97::5"
DEAD_GW4 = "10.70.0.5"  # via 10.2.0.99, which never answers
UNRESOLVED4, UNRESOLVED6 = "10.2.0.77", "fd02::77"  # on-link, nobody answers
LOCAL_ROUTE4 = "10.77.0.5"  # local 10.77.0.0/24 dev lo
NOWHERE4, NOWHERE6 = "192.0.2.1", "2001:db8:ffff::1"  # no route at all
ECMP4, ECMP6 = "10.90.0.", "fd90::"  # two next hops: h2 and a second gateway
ECMP_GW4, ECMP_GW6, ECMP_MAC = "10.2.0.3", "fd02::3", "02:00:00:00:02:03"
RULE_TABLE4, RULE_TABLE6 = "10.91.0.5", "fd91::5"  # custom: rule to table 91, via h2
RULE_PROHIBIT4, RULE_PROHIBIT6 = "10.92.0.5", "fd92::5"  # custom: a prohibit rule
RULE_BLACKHOLE_PORT = 5353  # custom: UDP to this port hits a blackhole rule
# The "custom" variant of the lab adds a local route (AnyIP) and policy rules:
# both make fib_validate_source() do its full check.
CUSTOM_ROUTING = [
    f"route add local {LOCAL_ROUTE4[:-1]}0/24 dev lo",
    f"route add {RULE_TABLE4[:-1]}0/24 via {H2} table 91",
    f"route add {RULE_TABLE6[:-1]}/64 via {H2_6} table 91",
    f"rule add to {RULE_TABLE4[:-1]}0/24 table 91",
    f"-6 rule add to {RULE_TABLE6[:-1]}/64 table 91",
    f"rule add to {RULE_PROHIBIT4[:-1]}0/24 prohibit",
    f"-6 rule add to {RULE_PROHIBIT6[:-1]}/64 prohibit",
    f"rule add ipproto udp dport {RULE_BLACKHOLE_PORT} blackhole",
    f"-6 rule add ipproto udp dport {RULE_BLACKHOLE_PORT} blackhole",
]

# `ip route` commands (router namespace) the corpus relies on.
ROUTER_ROUTES = [
    f"route add {REMOTE4[:-1]}0/24 via {H2}",
    f"route add {BACK4[:-1]}0/24 via {H1}",
    f"route add {MTU4[:-1]}0/24 via {H2} mtu {ROUTE_MTU}",
    f"route add {MTU_LOCK4[:-1]}0/24 via {H2} mtu lock {ROUTE_MTU}",
    f"route add blackhole {BLACKHOLE4[:-1]}0/24",
    f"route add unreachable {UNREACHABLE4[:-1]}0/24",
    f"route add prohibit {PROHIBIT4[:-1]}0/24",
    f"route add {DEAD_GW4[:-1]}0/24 via 10.2.0.99",
    f"route add {ECMP4}0/24 nexthop via {H2} nexthop via {ECMP_GW4}",
    f"route add {ECMP6}/64 nexthop via {H2_6} nexthop via {ECMP_GW6}",
    f"route add {REMOTE6[:-1]}/64 via {H2_6}",
    f"route add {BACK6[:-1]}/64 via {H1_6}",
    f"route add {MTU6[:-1]}/64 via {H2_6} mtu {ROUTE_MTU}",
    f"route add {MTU_LOCK6[:-1]}/64 via {H2_6} mtu lock {ROUTE_MTU}",
    f"route add blackhole {BLACKHOLE6[:-1]}/64",
    f"route add unreachable {UNREACHABLE6[:-1]}/64",
    f"route add prohibit {PROHIBIT6[:-1]}/64",
]


# Frames on which xdprouter still differs from Linux, each for a reason only
# the control plane can address; the test fails when one of them starts to
# agree, so the list stays true.
ROUTE_MTU_GAP = (
    "a route's mtu metric (not locked) is honoured by Linux forwarding "
    "(ip_dst_mtu_maybe_forward(dst, true), ip6_forward) but ignored by "
    "bpf_fib_lookup()'s MTU check (ip_mtu_from_fib_result(), ip6_mtu_from_fib6()), "
    "so the fast path forwards what Linux fragments or answers with Frag Needed / "
    "Packet Too Big; the data plane cannot see route metrics"
)
KNOWN_GAPS = {
    "v4 size > route mtu df": ROUTE_MTU_GAP,
    "v4 size > route mtu no df": ROUTE_MTU_GAP,
    "v6 size > route mtu": ROUTE_MTU_GAP,
}


@dataclass(frozen=True)
class Macs:
    h1: str
    r1: str  # the router's veth1 (h1's side)
    r2: str  # the router's veth2 (h2's side)
    h2: str


@dataclass(frozen=True)
class Frame:
    name: str
    data: bytes


def marker(index: int) -> bytes:
    return b"<XDPR%04d>" % index


def src4(index: int) -> str:
    return f"10.1.0.{SRC4_BASE + index}"


def src6(index: int) -> str:
    return f"fd01::1:{index:x}"


@dataclass(frozen=True)
class Ctx:
    """What a builder needs: the MACs and the frame's own marker and sources."""

    macs: Macs
    index: int

    @property
    def s4(self) -> str:
        return src4(self.index)

    @property
    def s6(self) -> str:
        return src6(self.index)

    def eth(self, dst: str | None = None) -> Ether:
        return Ether(dst=dst or self.macs.r1, src=self.macs.h1)

    def pay(self, size: int = 0) -> Raw:
        """The marker, padded with a byte pattern to ``size`` bytes."""
        m = marker(self.index)
        return Raw(m + bytes(i & 0xFF for i in range(max(0, size - len(m)))))

    def ip(self, dst: str = H2, **kw: object) -> IP:
        kw.setdefault("src", self.s4)
        return IP(dst=dst, **kw)

    def ip6(self, dst: str = H2_6, **kw: object) -> IPv6:
        kw.setdefault("src", self.s6)
        return IPv6(dst=dst, **kw)

    def udp4(self, dst: str = H2, tot_len: int = 0, eth_dst: str | None = None, **ip: object) -> Packet:
        """UDP in IPv4, ``tot_len`` bytes long if given."""
        size = max(0, tot_len - 28)
        return self.eth(eth_dst) / self.ip(dst, **ip) / UDP(sport=40000 + self.index, dport=9) / self.pay(size)

    def udp6(self, dst: str = H2_6, tot_len: int = 0, eth_dst: str | None = None, **ip: object) -> Packet:
        size = max(0, tot_len - 48)
        return self.eth(eth_dst) / self.ip6(dst, **ip) / UDP(sport=40000 + self.index, dport=9) / self.pay(size)

    def ext6(self, ext: Packet, size: int = 0, **ip: object) -> Packet:
        """UDP in IPv6 behind the extension header(s) ``ext``."""
        return self.eth() / self.ip6(**ip) / ext / UDP(sport=40000 + self.index, dport=9) / self.pay(size)

    def echo4(self, dst: str = H2, eth_dst: str | None = None, **ip: object) -> Packet:
        return self.eth(eth_dst) / self.ip(dst, **ip) / ICMP(id=self.index, seq=1) / self.pay()

    def echo6(self, dst: str = H2_6, eth_dst: str | None = None, **ip: object) -> Packet:
        return self.eth(eth_dst) / self.ip6(dst, **ip) / ICMPv6EchoRequest(id=self.index, seq=1) / self.pay()


Builder = Callable[[Ctx], Packet | bytes]


def opt4(raw: bytes) -> list[IPOption]:
    """IPv4 options from raw bytes (scapy pads them to a multiple of 4)."""
    return [IPOption(raw)]


def with_checksum(c: Ctx, check: int) -> bytes:
    """A UDP frame to h2 whose IPv4 header checksum is ``check``: the edges
    of the incremental update done when the TTL is decreased. The IP ID is
    chosen to get there (the checksum is the complement of the header's sum)."""
    data = bytes(c.udp4(id=0, chksum=0))
    words = struct.unpack_from("!10H", data, 14)
    base = sum(words)
    for ident in range(0x10000):
        total = base + ident
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
        if (~total & 0xFFFF) == check:
            return set_bytes(set_bytes(data, 18, struct.pack("!H", ident)), 24, struct.pack("!H", check))
    raise AssertionError(f"no IP ID gives checksum {check:#x}")


def set_bytes(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def quote4(src: str, dst: str) -> Packet:
    """The start of a datagram, as an ICMP error would quote it."""
    return IP(src=src, dst=dst, ttl=1) / UDP(sport=53, dport=33434)


# Each entry: (name, builder). The index of an entry is its marker.
CASES: list[tuple[str, Builder]] = [
    # --- IPv4, forwarded by Linux -------------------------------------------
    ("v4 udp", lambda c: c.udp4()),
    ("v4 tcp syn", lambda c: c.eth() / c.ip() / TCP(sport=40000 + c.index, dport=80, flags="S") / c.pay()),
    (
        "v4 tcp bad l4 checksum",
        lambda c: c.eth() / c.ip() / TCP(sport=1, dport=80, flags="PA", chksum=0xDEAD) / c.pay(),
    ),
    ("v4 udp zero checksum", lambda c: c.eth() / c.ip() / UDP(sport=1, dport=9, chksum=0) / c.pay()),
    ("v4 icmp echo", lambda c: c.echo4()),
    ("v4 gre", lambda c: c.eth() / c.ip(proto=47) / Raw(b"\x00\x00\x08\x00") / c.pay()),
    ("v4 sctp", lambda c: c.eth() / c.ip(proto=132) / Raw(b"\x13\x88\x13\x89" + bytes(8)) / c.pay()),
    ("v4 proto 253", lambda c: c.eth() / c.ip(proto=253) / c.pay()),
    ("v4 header only", lambda c: c.eth() / c.ip(proto=59)),
    ("v4 tos dscp ecn", lambda c: c.udp4(tos=0xB9)),
    ("v4 df", lambda c: c.udp4(flags="DF")),
    ("v4 reserved flag", lambda c: c.udp4(flags="evil")),
    ("v4 ttl 2", lambda c: c.udp4(ttl=2)),
    ("v4 ttl 255", lambda c: c.udp4(ttl=255)),
    ("v4 checksum edge 0xfeff", lambda c: with_checksum(c, 0xFEFF)),
    ("v4 checksum edge 0xff00", lambda c: with_checksum(c, 0xFF00)),
    ("v4 checksum edge 0x0000", lambda c: with_checksum(c, 0x0000)),
    ("v4 checksum edge 0xfffe", lambda c: with_checksum(c, 0xFFFE)),
    ("v4 padding", lambda c: bytes(c.udp4()) + b"\xee" * 30),
    ("v4 min frame padded", lambda c: bytes(c.eth() / c.ip(proto=59) / Raw(b"\x01")) + bytes(25)),
    ("v4 via gateway", lambda c: c.udp4(REMOTE4)),
    ("v4 source class e", lambda c: c.udp4(src="240.0.0.1")),
    ("v4 source is destination", lambda c: c.udp4(src=H2)),
    ("v4 source subnet broadcast", lambda c: c.udp4(src="10.2.0.255")),
    ("v4 source ingress broadcast", lambda c: c.udp4(src="10.1.0.255")),
    ("v4 source network address", lambda c: c.udp4(src="10.2.0.0")),
    ("v4 source unroutable", lambda c: c.udp4(src="198.51.100.7")),
    ("v4 source in blackhole route", lambda c: c.udp4(src="10.99.0.9")),
    ("v4 source in local route", lambda c: c.udp4(src=LOCAL_ROUTE4)),
    ("v4 source router veth1", lambda c: c.udp4(src=R1)),
    ("v4 source router veth2", lambda c: c.udp4(src=R2)),
    ("v4 size = egress mtu df", lambda c: c.udp4(tot_len=EGRESS_MTU, flags="DF")),
    ("v4 size > egress mtu df", lambda c: c.udp4(tot_len=EGRESS_MTU + 1, flags="DF")),
    ("v4 size > egress mtu no df", lambda c: c.udp4(tot_len=1450)),
    ("v4 size > route mtu df", lambda c: c.udp4(MTU4, tot_len=ROUTE_MTU + 50, flags="DF")),
    ("v4 size > route mtu no df", lambda c: c.udp4(MTU4, tot_len=ROUTE_MTU + 50)),
    ("v4 size = route mtu df", lambda c: c.udp4(MTU4, tot_len=ROUTE_MTU, flags="DF")),
    ("v4 size > locked route mtu df", lambda c: c.udp4(MTU_LOCK4, tot_len=ROUTE_MTU + 50, flags="DF")),
    ("v4 padded, ip = egress mtu", lambda c: bytes(c.udp4(tot_len=EGRESS_MTU, flags="DF")) + bytes(40)),
    # --- IPv4, not forwarded: the kernel answers or drops ---------------------
    ("v4 ttl 1", lambda c: c.udp4(ttl=1)),
    ("v4 ttl 0", lambda c: c.udp4(ttl=0)),
    ("v4 ttl 1 tcp", lambda c: c.eth() / c.ip(ttl=1) / TCP(sport=1, dport=80, flags="S") / c.pay()),
    ("v4 bad checksum", lambda c: c.udp4(chksum=0x1234)),
    ("v4 truncated header", lambda c: bytes(c.udp4())[:24]),
    ("v4 tot_len > frame", lambda c: c.udp4(len=200)),
    ("v4 tot_len < ihl", lambda c: c.udp4(len=12)),
    ("v4 ihl 4", lambda c: set_bytes(bytes(c.udp4()), 14, b"\x44")),
    ("v4 version 6", lambda c: set_bytes(bytes(c.udp4()), 14, b"\x65")),
    ("v4 eth type only", lambda c: bytes(c.eth() / Raw(b""))[:12] + b"\x08\x00"),
    ("v4 opt record route", lambda c: c.udp4(options=opt4(b"\x07\x0b\x04" + bytes(8)))),
    ("v4 opt router alert", lambda c: c.udp4(options=opt4(b"\x94\x04\x00\x00"))),
    ("v4 opt timestamp full", lambda c: c.udp4(options=opt4(b"\x44\x0c\x0d\x00" + bytes(8)))),
    (
        "v4 opt timestamp prespec",
        lambda c: c.udp4(options=opt4(b"\x44\x0c\x05\x03" + bytes([192, 0, 2, 9]) + bytes(4))),
    ),
    ("v4 opt lsrr", lambda c: c.udp4(options=opt4(b"\x83\x07\x04" + bytes([10, 50, 0, 5]) + b"\x00"))),
    ("v4 opt ssrr", lambda c: c.udp4(options=opt4(b"\x89\x07\x04" + bytes([10, 50, 0, 5]) + b"\x00"))),
    ("v4 opt nops", lambda c: c.udp4(options=opt4(b"\x01\x01\x01\x00"))),
    ("v4 opt unknown", lambda c: c.udp4(options=opt4(b"\x1e\x04\x00\x00"))),
    ("v4 opt bad length", lambda c: c.udp4(options=opt4(b"\x07\x02\x00\x00"))),
    ("v4 opt record route ttl 1", lambda c: c.udp4(ttl=1, options=opt4(b"\x07\x0b\x04" + bytes(8)))),
    ("v4 first fragment", lambda c: c.udp4(flags="MF", tot_len=100)),
    ("v4 middle fragment", lambda c: c.eth() / c.ip(flags="MF", frag=10, proto=17) / c.pay(64)),
    ("v4 last fragment", lambda c: c.eth() / c.ip(frag=20, proto=17) / c.pay(64)),
    ("v4 fragment df+mf", lambda c: c.udp4(flags="DF+MF")),
    ("v4 first fragment ttl 1", lambda c: c.udp4(flags="MF", ttl=1, tot_len=100)),
    ("v4 fragment > egress mtu df", lambda c: c.eth() / c.ip(flags="DF", frag=20, proto=17) / c.pay(1420)),
    ("v4 martian src 127.0.0.1", lambda c: c.udp4(src="127.0.0.1")),
    ("v4 martian src 0.0.0.0", lambda c: c.udp4(src="0.0.0.0")),
    ("v4 martian src 0.1.2.3", lambda c: c.udp4(src="0.1.2.3")),
    ("v4 martian src multicast", lambda c: c.udp4(src="224.0.0.5")),
    ("v4 martian src broadcast", lambda c: c.udp4(src="255.255.255.255")),
    ("v4 martian dst 127.0.0.1", lambda c: c.udp4("127.0.0.1")),
    ("v4 martian dst 0.0.0.5", lambda c: c.udp4("0.0.0.5")),
    ("v4 dst 0.0.0.0 src 0.0.0.0", lambda c: c.udp4("0.0.0.0", src="0.0.0.0")),
    ("v4 dst class e", lambda c: c.udp4("240.0.0.1")),
    ("v4 dst limited broadcast", lambda c: c.udp4("255.255.255.255")),
    ("v4 dst egress subnet broadcast", lambda c: c.echo4("10.2.0.255")),
    ("v4 dst ingress subnet broadcast", lambda c: c.echo4("10.1.0.255")),
    ("v4 dst egress network address", lambda c: c.udp4("10.2.0.0")),
    ("v4 dst multicast", lambda c: c.udp4("239.1.2.3")),
    ("v4 dst all-hosts echo", lambda c: c.echo4("224.0.0.1")),
    ("v4 echo router veth1", lambda c: c.echo4(R1)),
    ("v4 echo router veth2", lambda c: c.echo4(R2)),
    ("v4 echo router ttl 1", lambda c: c.echo4(R1, ttl=1)),
    ("v4 echo local route", lambda c: c.echo4(LOCAL_ROUTE4)),
    ("v4 udp router closed port", lambda c: c.udp4(R1)),
    ("v4 tcp router closed port", lambda c: c.eth() / c.ip(R2) / TCP(sport=1, dport=22, flags="S") / c.pay()),
    ("v4 no route", lambda c: c.udp4(NOWHERE4)),
    ("v4 blackhole", lambda c: c.udp4(BLACKHOLE4)),
    ("v4 blackhole ttl 1", lambda c: c.udp4(BLACKHOLE4, ttl=1)),
    ("v4 unreachable", lambda c: c.udp4(UNREACHABLE4)),
    ("v4 unreachable ttl 1", lambda c: c.udp4(UNREACHABLE4, ttl=1)),
    ("v4 prohibit", lambda c: c.udp4(PROHIBIT4)),
    ("v4 same interface (redirect)", lambda c: c.udp4(BACK4)),
    ("v4 on-link same interface", lambda c: c.udp4(src4(MAX_FRAMES - 1))),
    ("v4 same interface source off-link", lambda c: c.udp4(BACK4, src="198.51.100.9")),
    ("v4 unresolved neighbour", lambda c: c.udp4(UNRESOLVED4)),
    ("v4 dead gateway", lambda c: c.udp4(DEAD_GW4)),
    ("v4 mac foreign unicast", lambda c: c.udp4(eth_dst="02:00:00:00:00:99")),
    ("v4 mac broadcast", lambda c: c.udp4(eth_dst="ff:ff:ff:ff:ff:ff")),
    ("v4 mac multicast", lambda c: c.udp4(eth_dst="01:00:5e:00:00:01")),
    ("v4 mac broadcast echo router", lambda c: c.echo4(R1, eth_dst="ff:ff:ff:ff:ff:ff")),
    ("v4 mac of veth2", lambda c: c.udp4(eth_dst=c.macs.r2)),
    (
        "v4 icmp error forwarded",
        lambda c: c.eth() / c.ip() / ICMP(type=3, code=3) / quote4(H2, c.s4) / c.pay(),
    ),
    (
        "v4 icmp error ttl 1",
        lambda c: c.eth() / c.ip(ttl=1) / ICMP(type=11, code=0) / quote4(H2, c.s4) / c.pay(),
    ),
    (
        "v4 icmp error to no route",
        lambda c: c.eth() / c.ip(NOWHERE4) / ICMP(type=3, code=1) / quote4(NOWHERE4, c.s4) / c.pay(),
    ),
    ("v4 icmp error truncated", lambda c: c.eth() / c.ip(proto=1) / Raw(b"\x03")),
    ("v4 icmp timestamp", lambda c: c.eth() / c.ip() / ICMP(type=13) / c.pay()),
    *[
        (f"v4 ecmp {k}", lambda c, k=k: c.eth() / c.ip(f"{ECMP4}{k + 1}") / UDP(sport=1000 + 7 * k, dport=53) / c.pay())
        for k in range(6)
    ],
    *[
        (
            f"v4 ecmp udp ports in padding {k}",
            lambda c, k=k: bytes(c.eth() / c.ip(f"{ECMP4}{k + 20}", proto=17)) + bytes([0xA5 + k] * 26),
        )
        for k in range(4)
    ],
    ("v4 icmp type in padding", lambda c: bytes(c.eth() / c.ip(proto=1)) + b"\x03\x01" + bytes(24)),
    ("v4 ecmp tcp", lambda c: c.eth() / c.ip(f"{ECMP4}9") / TCP(sport=1234, dport=443, flags="S") / c.pay()),
    ("v4 policy rule table", lambda c: c.udp4(RULE_TABLE4)),
    ("v4 policy rule prohibit", lambda c: c.udp4(RULE_PROHIBIT4)),
    (
        "v4 policy rule port blackhole",
        lambda c: c.eth() / c.ip() / UDP(sport=1, dport=RULE_BLACKHOLE_PORT) / c.pay(),
    ),
    ("v4 priority tagged", lambda c: c.eth() / Dot1Q(vlan=0) / c.ip() / UDP(sport=1, dport=9) / c.pay()),
    # --- not IP ---------------------------------------------------------------
    (
        "arp request for router",
        lambda c: (
            Ether(dst="ff:ff:ff:ff:ff:ff", src=c.macs.h1) / ARP(op=1, hwsrc=c.macs.h1, psrc=H1, pdst=R1) / c.pay()
        ),
    ),
    ("vlan tagged", lambda c: c.eth() / Dot1Q(vlan=5) / c.ip() / UDP(sport=1, dport=9) / c.pay()),
    ("lldp", lambda c: Ether(dst="01:80:c2:00:00:0e", src=c.macs.h1, type=0x88CC) / c.pay()),
    ("ethernet header only", lambda c: bytes(c.eth() / Raw(b""))[:12] + b"\x88\xb5"),
    # --- IPv6, forwarded by Linux ---------------------------------------------
    ("v6 udp", lambda c: c.udp6()),
    ("v6 tcp syn", lambda c: c.eth() / c.ip6() / TCP(sport=40000 + c.index, dport=80, flags="S") / c.pay()),
    ("v6 icmp echo", lambda c: c.echo6()),
    ("v6 no next header", lambda c: c.eth() / c.ip6(nh=59) / c.pay()),
    ("v6 sctp", lambda c: c.eth() / c.ip6(nh=132) / Raw(b"\x13\x88\x13\x89" + bytes(8)) / c.pay()),
    ("v6 tclass flowlabel", lambda c: c.udp6(tc=0xB9, fl=0xABCDE)),
    ("v6 hop limit 2", lambda c: c.udp6(hlim=2)),
    ("v6 padding", lambda c: bytes(c.udp6()) + b"\xee" * 30),
    ("v6 via gateway", lambda c: c.udp6(REMOTE6)),
    ("v6 source is destination", lambda c: c.udp6(src=H2_6)),
    ("v6 source unroutable", lambda c: c.udp6(src="2001:db8::7")),
    ("v6 source v4-compatible", lambda c: c.udp6(src="::10.1.2.3")),
    ("v6 source site-local", lambda c: c.udp6(src="fec0::5")),
    ("v6 source router veth1", lambda c: c.udp6(src=R1_6)),
    ("v6 source router veth2", lambda c: c.udp6(src=R2_6)),
    ("v6 source subnet-router anycast", lambda c: c.udp6(src="fd02::")),
    ("v6 size = egress mtu", lambda c: c.udp6(tot_len=EGRESS_MTU)),
    ("v6 size > egress mtu", lambda c: c.udp6(tot_len=EGRESS_MTU + 1)),
    ("v6 size > route mtu", lambda c: c.udp6(MTU6, tot_len=ROUTE_MTU + 50)),
    ("v6 size > locked route mtu", lambda c: c.udp6(MTU_LOCK6, tot_len=ROUTE_MTU + 50)),
    *[
        (f"v6 ecmp {k}", lambda c, k=k: c.eth() / c.ip6(f"{ECMP6}{k + 1}") / UDP(sport=1000 + 7 * k) / c.pay())
        for k in range(6)
    ],
    *[
        (
            f"v6 ecmp udp ports in padding {k}",
            lambda c, k=k: (
                bytes(c.eth() / c.ip6(f"{ECMP6}{k + 20}", nh=17, plen=2) / Raw(b"\0\0")) + bytes([0xA5 + k] * 8)
            ),
        )
        for k in range(4)
    ],
    ("v6 ecmp flowlabel", lambda c: c.udp6(f"{ECMP6}9", fl=0x12345)),
    ("v6 policy rule table", lambda c: c.udp6(RULE_TABLE6)),
    ("v6 policy rule prohibit", lambda c: c.udp6(RULE_PROHIBIT6)),
    (
        "v6 policy rule port blackhole",
        lambda c: c.eth() / c.ip6() / UDP(sport=1, dport=RULE_BLACKHOLE_PORT) / c.pay(),
    ),
    ("v6 priority tagged", lambda c: c.eth() / Dot1Q(vlan=0) / c.ip6() / UDP(sport=1, dport=9) / c.pay()),
    # --- IPv6, not forwarded ---------------------------------------------------
    ("v6 hop limit 1", lambda c: c.udp6(hlim=1)),
    ("v6 hop limit 0", lambda c: c.udp6(hlim=0)),
    ("v6 payload_len > frame", lambda c: c.udp6(plen=300)),
    ("v6 payload_len 0", lambda c: c.eth() / c.ip6(nh=59, plen=0) / c.pay()),
    ("v6 truncated header", lambda c: bytes(c.udp6())[:34]),
    ("v6 version 4", lambda c: set_bytes(bytes(c.udp6()), 14, b"\x40")),
    ("v6 hop-by-hop padn", lambda c: c.ext6(IPv6ExtHdrHopByHop(options=[PadN(optdata=bytes(4))]))),
    ("v6 hop-by-hop router alert", lambda c: c.ext6(IPv6ExtHdrHopByHop(options=[RouterAlert()]))),
    (
        "v6 hop-by-hop unknown option",
        lambda c: c.ext6(IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x8A, optdata=bytes(4))])),
    ),
    ("v6 destination options", lambda c: c.ext6(IPv6ExtHdrDestOpt(options=[PadN(optdata=bytes(4))]))),
    ("v6 routing type 0", lambda c: c.ext6(IPv6ExtHdrRouting(addresses=[REMOTE6], segleft=1))),
    ("v6 routing type 0 segleft 0", lambda c: c.ext6(IPv6ExtHdrRouting(addresses=[REMOTE6], segleft=0))),
    (
        "v6 segment routing",
        lambda c: c.ext6(IPv6ExtHdrSegmentRouting(addresses=[REMOTE6, H2_6], segleft=1)),
    ),
    ("v6 fragment first", lambda c: c.ext6(IPv6ExtHdrFragment(m=1, id=c.index), 64)),
    ("v6 fragment atomic", lambda c: c.ext6(IPv6ExtHdrFragment(m=0, offset=0, id=c.index))),
    ("v6 fragment hop limit 1", lambda c: c.ext6(IPv6ExtHdrFragment(m=1, id=c.index), 64, hlim=1)),
    ("v6 martian src ::1", lambda c: c.udp6(src="::1")),
    ("v6 martian src ::", lambda c: c.udp6(src="::")),
    ("v6 martian src multicast", lambda c: c.udp6(src="ff02::1")),
    ("v6 martian src v4-mapped", lambda c: c.udp6(src="::ffff:10.1.0.2")),
    ("v6 martian dst ::1", lambda c: c.udp6("::1")),
    ("v6 dst ::", lambda c: c.udp6("::")),
    ("v6 dst v4-mapped", lambda c: c.udp6("::ffff:10.2.0.2")),
    ("v6 src link-local", lambda c: c.udp6(src=LINK_LOCAL_SOURCES[0])),
    ("v6 src link-local hop limit 1", lambda c: c.udp6(src=LINK_LOCAL_SOURCES[1], hlim=1)),
    ("v6 dst link-local", lambda c: c.udp6("fe80::99")),
    ("v6 dst multicast link scope", lambda c: c.udp6("ff02::1")),
    ("v6 dst multicast global", lambda c: c.udp6("ff0e::1234")),
    ("v6 dst multicast interface-local", lambda c: c.udp6("ff01::1")),
    ("v6 dst multicast scope 0", lambda c: c.udp6("ff00::1")),
    ("v6 echo router veth1", lambda c: c.echo6(R1_6)),
    ("v6 echo router veth2", lambda c: c.echo6(R2_6)),
    ("v6 echo router hop limit 1", lambda c: c.echo6(R1_6, hlim=1)),
    ("v6 echo subnet-router anycast egress", lambda c: c.echo6("fd02::")),
    ("v6 echo subnet-router anycast ingress", lambda c: c.echo6("fd01::")),
    ("v6 udp router closed port", lambda c: c.udp6(R1_6)),
    ("v6 tcp router closed port", lambda c: c.eth() / c.ip6(R2_6) / TCP(sport=1, dport=22, flags="S") / c.pay()),
    ("v6 no route", lambda c: c.udp6(NOWHERE6)),
    ("v6 blackhole", lambda c: c.udp6(BLACKHOLE6)),
    ("v6 blackhole hop limit 1", lambda c: c.udp6(BLACKHOLE6, hlim=1)),
    ("v6 unreachable", lambda c: c.udp6(UNREACHABLE6)),
    ("v6 prohibit", lambda c: c.udp6(PROHIBIT6)),
    ("v6 same interface (redirect)", lambda c: c.udp6(BACK6)),
    ("v6 on-link same interface", lambda c: c.udp6(src6(MAX_FRAMES - 1))),
    ("v6 unresolved neighbour", lambda c: c.udp6(UNRESOLVED6)),
    ("v6 mac foreign unicast", lambda c: c.udp6(eth_dst="02:00:00:00:00:99")),
    ("v6 mac multicast", lambda c: c.udp6(eth_dst="33:33:00:00:00:01")),
    ("v6 mac broadcast", lambda c: c.udp6(eth_dst="ff:ff:ff:ff:ff:ff")),
    (
        "v6 neighbour solicitation for router",
        lambda c: (
            Ether(dst="33:33:ff:00:00:01", src=c.macs.h1)
            / IPv6(src=c.s6, dst="ff02::1:ff00:1", hlim=255)
            / ICMPv6ND_NS(tgt=R1_6)
            / ICMPv6NDOptSrcLLAddr(lladdr=c.macs.h1)
        ),
    ),
    (
        "v6 icmp error forwarded",
        lambda c: c.eth() / c.ip6() / ICMPv6DestUnreach(code=4) / IPv6(src=H2_6, dst=c.s6) / UDP() / c.pay(),
    ),
    (
        "v6 packet too big forwarded",
        lambda c: c.eth() / c.ip6() / ICMPv6PacketTooBig(mtu=1280) / IPv6(src=H2_6, dst=c.s6) / UDP() / c.pay(),
    ),
    (
        "v6 icmp error hop limit 1",
        lambda c: c.eth() / c.ip6(hlim=1) / ICMPv6DestUnreach(code=4) / IPv6(src=H2_6, dst=c.s6) / UDP() / c.pay(),
    ),
]


def build(macs: Macs) -> list[Frame]:
    if len(CASES) > MAX_FRAMES - 1:
        raise AssertionError("corpus larger than the source address pool")
    frames = []
    for index, (name, builder) in enumerate(CASES):
        data = builder(Ctx(macs, index))
        frames.append(Frame(name, data if isinstance(data, bytes) else bytes(data)))
    return frames

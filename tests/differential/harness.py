"""The machinery of the differential tests: the router set-up, the AF_PACKET
taps, sending frames one at a time through one run, and reporting. See
test_differential.py for why each piece is the way it is.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from xdprouter.dataplane import abi
from xdprouter.firewall import Firewall, Rule
from xdprouter.firewall.rules import parse_prefix_lines, prefix_parts
from xdprouter.lab import Lab, fwbench, netns, sh
from xdprouter.router import LookupCounters, Router

from . import corpus

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SETTLE = 0.025  # seconds after each frame; forwarding and ICMP errors are synchronous
QUIET = 0.005  # and then until nothing more arrives for this long
FINAL_SETTLE = 0.6  # neighbour resolution fails after one 100 ms probe
MARKER = re.compile(rb"<XDPR(\d{4})>")
NOISE_ICMP6 = {130, 131, 132, 133, 134, 143}  # MLD queries/reports, RS, RA
ROUTER_IP4 = {socket.inet_aton(a) for a in (corpus.R1, corpus.R2, corpus.LOCAL_ROUTE4)}
HEX_LIMIT = 160  # bytes of each frame shown in a failure report


@dataclass
class Output:
    side: str  # "h1" (came back) or "h2" (went through)
    data: bytes

    def __str__(self) -> str:
        try:
            summary = Ether(self.data).summary()
        except Exception:  # noqa: BLE001 - a summary is best effort
            summary = "(unparsable)"
        more = "..." if len(self.data) > HEX_LIMIT else ""
        return f"{self.side} {len(self.data):4d}B {summary}\n        {self.data[:HEX_LIMIT].hex()}{more}"


@dataclass
class Run:
    outputs: list[list[Output]]
    reasons: list[str] = field(default_factory=list)
    fw_rules: int = 0  # firewall rules loaded during the run
    fw_allowed: int = 0  # frames the corpus-matching allow rules counted


@dataclass(frozen=True)
class Variant:
    """Router settings that change which checks the kernel makes."""

    custom: bool  # a local route and policy rules: fib_validate_source() does its full check
    send_redirects: bool  # off: a frame back out of its interface is XDP_TX
    hash_policy: int  # fib_multipath_hash_policy of both families (0: L3, 1: L4)
    firewall: bool = False  # rules and a prefix set loaded that let every frame of the corpus through


VARIANTS = {
    "plain": Variant(custom=False, send_redirects=True, hash_policy=0),
    "custom-noredirects-l4hash": Variant(custom=True, send_redirects=False, hash_policy=1),
    "plain-firewall": Variant(custom=False, send_redirects=True, hash_policy=0, firewall=True),
}
FW_RULES, FW_SET = 2_000, 20_000  # the benchmark's kinds of rules and set prefixes


def _addresses(frames: list[corpus.Frame]) -> dict[int, list[int]]:
    """Every source and destination address of the corpus, by family."""
    out: dict[int, list[int]] = {4: [], 6: []}
    for frame in frames:
        pkt = Ether(frame.data)
        for layer, fam in ((IP, 4), (IPv6, 6)):
            if layer in pkt:
                out[fam] += [
                    int.from_bytes(socket.inet_pton(socket.AF_INET if fam == 4 else socket.AF_INET6, a), "big")
                    for a in (pkt[layer].src, pkt[layer].dst)
                ]
    return out


def _covers(fam: int, addr: int, plen: int, addrs: dict[int, list[int]]) -> bool:
    width = 32 if fam == 4 else 128
    return any(a >> (width - plen) == addr >> (width - plen) for a in addrs[fam]) if plen else bool(addrs[fam])


def firewall_for(frames: list[corpus.Frame]) -> tuple[list[Rule], list[tuple[int, bytes, int]]]:
    """A rule set of the benchmark's kinds (a set of random prefixes first,
    limit rules that block, ports, IPv6) without what covers a corpus
    address, behind allow rules the corpus does match (so its frames go
    through the whole classifier, not only the pre-filter)."""
    addrs = _addresses(frames)

    def clear(value: str | None) -> bool:
        return not value or value.startswith("@") or not _covers(*prefix_parts(value), addrs)

    rules = [r for r in fwbench.benchmark_rules(FW_RULES) if clear(r.src) and clear(r.dst)]
    prefixes = [
        (fam, raw, plen)
        for fam, raw, plen in parse_prefix_lines(fwbench.random_prefixes(FW_SET, seed=7))
        if not _covers(fam, int.from_bytes(raw, "big"), plen, addrs)
    ]
    allow = [
        Rule.parse(action="allow", proto="udp", dport="7-9"),
        Rule.parse(action="allow", dst=f"{corpus.H2}/32", proto="tcp"),
    ]
    return [rules[0], *allow, *rules[1:]], prefixes


def router_lab(lab: Lab, variant: Variant) -> corpus.Macs:
    r = lab.router
    macs = corpus.Macs(
        h1=lab.mac(lab.h1.ns, "eth0"), r1=lab.mac(r, "veth1"), r2=lab.mac(r, "veth2"), h2=lab.mac(lab.h2.ns, "eth0")
    )
    for host in (lab.h1, lab.h2):
        lab.ip(host.ns, "addr", "flush", "dev", host.iface)
        lab.sysctl(host.ns, f"net.ipv6.conf.{host.iface}.router_solicitations", "0")
        lab.sysctl(host.ns, f"net.ipv6.conf.{host.iface}.disable_ipv6", "1")
    lab.ip(r, "link", "set", "veth2", "mtu", str(corpus.EGRESS_MTU))
    for key, value in (
        ("net.ipv4.icmp_ratelimit", "0"),
        ("net.ipv4.icmp_msgs_per_sec", "100000"),
        ("net.ipv4.icmp_msgs_burst", "100000"),
        ("net.ipv6.icmp.ratelimit", "0"),
    ):
        lab.sysctl(r, key, value)
    redirects = "1" if variant.send_redirects else "0"
    for conf in ("all", "default", *lab.router_ifaces):
        lab.sysctl(r, f"net.ipv4.conf.{conf}.send_redirects", redirects)
    lab.sysctl(r, "net.ipv4.fib_multipath_hash_policy", str(variant.hash_policy))
    lab.sysctl(r, "net.ipv6.fib_multipath_hash_policy", str(variant.hash_policy))
    for family in ("ipv4", "ipv6"):
        for iface in lab.router_ifaces:
            lab.sysctl(r, f"net.{family}.neigh.{iface}.mcast_solicit", "1")
            lab.sysctl(r, f"net.{family}.neigh.{iface}.retrans_time_ms", "100")
    for command in corpus.CUSTOM_ROUTING if variant.custom else []:
        lab.ip(r, *command.split())
    batch = [*corpus.ROUTER_ROUTES]
    neigh = "neigh replace {} lladdr {} dev {} nud permanent"
    batch += [neigh.format(a, macs.h2, "veth2") for a in (corpus.H2, corpus.H2_6)]
    batch += [neigh.format(a, corpus.ECMP_MAC, "veth2") for a in (corpus.ECMP_GW4, corpus.ECMP_GW6)]
    pool = [corpus.src4(i) for i in range(corpus.MAX_FRAMES)] + [corpus.src6(i) for i in range(corpus.MAX_FRAMES)]
    pool += [corpus.H1, corpus.H1_6, *corpus.LINK_LOCAL_SOURCES]
    batch += [neigh.format(a, macs.h1, "veth1") for a in pool]
    sh("ip", "-n", r, "-batch", "-", input="\n".join(batch) + "\n")
    return macs


def noise(data: bytes) -> bool:
    """Frames the router's stack sends on its own: MLD, RS/RA, IGMP."""
    if len(data) < 14:
        return False
    ethertype = struct.unpack_from("!H", data, 12)[0]
    if ethertype == 0x0800 and len(data) >= 34:
        return data[23] == 2  # IGMP
    if ethertype != 0x86DD or len(data) < 54:
        return False
    nexthdr, off = data[20], 54
    if nexthdr == 0 and len(data) >= off + 8:  # MLD comes after a hop-by-hop header
        nexthdr, off = data[off], off + (data[off + 1] + 1) * 8
    return nexthdr == 58 and len(data) > off and data[off] in NOISE_ICMP6


def normalise(data: bytes) -> bytes:
    """Zero the IP ID and header checksum of the router's own IPv4 datagrams."""
    if len(data) >= 34 and data[12:14] == b"\x08\x00" and data[26:30] in ROUTER_IP4:
        return data[:18] + b"\x00\x00" + data[20:24] + b"\x00\x00" + data[26:]
    return data


class Taps:
    """AF_PACKET sockets: one sending from h1, one capturing on each host."""

    def __init__(self, lab: Lab) -> None:
        self.socks: list[socket.socket] = []
        with netns(lab.h1.ns):
            self.tx = self._open(lab.h1.iface)
            self.h1 = self._open(lab.h1.iface)
        with netns(lab.h2.ns):
            self.h2 = self._open(lab.h2.iface)

    def _open(self, iface: str) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.socks.append(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.bind((iface, ETH_P_ALL))
        s.setblocking(False)
        return s

    def drain(self) -> Iterator[Output]:
        for side, s in (("h1", self.h1), ("h2", self.h2)):
            while True:
                try:
                    data, addr = s.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING and not noise(data):
                    yield Output(side, normalise(data))

    def close(self) -> None:
        for s in self.socks:
            s.close()


def reason_packets(lab: Lab) -> dict[str, int]:
    with netns(lab.router):
        stats = Router().stats()
    totals: dict[str, int] = {}
    for counters in stats.values():
        for name, c in counters.reasons.items():
            totals[name] = totals.get(name, 0) + c.packets
    return totals


def send_all(lab: Lab, taps: Taps, frames: list[corpus.Frame], xdp: bool, final_settle: float = FINAL_SETTLE) -> Run:
    run = Run([[] for _ in frames])
    time.sleep(SETTLE)
    list(taps.drain())  # whatever came before the first frame is not ours
    before = reason_packets(lab) if xdp else {}
    for i, frame in enumerate(frames):
        taps.tx.send(frame.data)
        time.sleep(SETTLE)
        collect(taps, run, i)
        if xdp:
            after = reason_packets(lab)
            moved = [f"{n} x{after[n] - before.get(n, 0)}" for n in after if after[n] != before.get(n, 0)]
            run.reasons.append(", ".join(moved) or "(not seen)")
            before = after
    time.sleep(final_settle)
    collect(taps, run, len(frames) - 1)
    return run


def collect(taps: Taps, run: Run, current: int) -> None:
    """Drain both taps until they stay quiet for a few milliseconds."""
    for _ in range(20):
        outs = list(taps.drain())
        if not outs:
            return
        for out in outs:
            m = MARKER.search(out.data)
            owner = int(m.group(1)) if m and int(m.group(1)) < len(run.outputs) else current
            run.outputs[owner].append(out)
        time.sleep(QUIET)


def reset_router_state(lab: Lab) -> None:
    """Forget what the previous run taught the router: resolved or failed
    neighbours and cached routes (PMTU and redirect exceptions)."""
    for family in ("-4", "-6"):
        lab.ip(lab.router, family, "neigh", "flush", "nud", "failed", check=False)
        lab.ip(lab.router, family, "neigh", "flush", "nud", "incomplete", check=False)
        lab.ip(lab.router, family, "neigh", "flush", "nud", "reachable", check=False)
        lab.ip(lab.router, family, "neigh", "flush", "nud", "stale", check=False)
        lab.ip(lab.router, family, "route", "flush", "cache", check=False)


def report(frames: list[corpus.Frame], kernel: Run, xdp: Run, bad: list[int]) -> str:
    lines = [f"{len(bad)} of {len(frames)} frames leave the router differently with xdprouter attached:"]
    for i in bad:
        lines.append(f"\n#{i} {frames[i].name!r}  (xdprouter reason: {xdp.reasons[i]})")
        more = "..." if len(frames[i].data) > HEX_LIMIT else ""
        lines.append(f"    sent      {len(frames[i].data):4d}B {frames[i].data[:HEX_LIMIT].hex()}{more}")
        if i < len(kernel.outputs) and kernel.outputs[i] and xdp.outputs[i]:
            a, b = kernel.outputs[i][0].data, xdp.outputs[i][0].data
            at = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            lines.append(f"    first outputs differ from byte {at}")
        for label, run in (("kernel   ", kernel), ("xdprouter", xdp)):
            outs = run.outputs[i]
            if not outs:
                lines.append(f"    {label} (nothing)")
            for out in outs:
                lines.append(f"    {label} {out}")
    return "\n".join(lines)


def outputs_key(outputs: list[Output]) -> list[tuple[str, bytes]]:
    return [(o.side, o.data) for o in outputs]


def dump(frames: list[corpus.Frame], kernel: Run, xdp: Run) -> None:
    """With XDPR_DIFF_DUMP=path, write every frame's outputs there (both runs)."""
    path = os.environ.get("XDPR_DIFF_DUMP")
    if not path:
        return
    with open(path, "a") as fh:
        for i, frame in enumerate(frames):
            same = "same" if outputs_key(kernel.outputs[i]) == outputs_key(xdp.outputs[i]) else "DIFFERENT"
            fh.write(f"#{i} {frame.name!r} [{xdp.reasons[i]}] {same}\n")
            for out in kernel.outputs[i]:
                fh.write(f"    kernel    {out}\n")
            for out in xdp.outputs[i]:
                fh.write(f"    xdprouter {out}\n")


def run_both(
    lab: Lab, frames: list[corpus.Frame], final_settle: float = FINAL_SETTLE, firewall: bool = False
) -> tuple[Run, Run, int, LookupCounters]:
    """Send ``frames`` through plain kernel forwarding, then with xdprouter
    attached natively to both router interfaces; also return how many frames
    the fast path forwarded, and how its lookups were made. Detaches even on
    failure."""
    taps = Taps(lab)
    try:
        reset_router_state(lab)
        kernel = send_all(lab, taps, frames, xdp=False, final_settle=final_settle)
        reset_router_state(lab)
        lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
        try:
            if firewall:
                rules, prefixes = firewall_for(frames)
                with netns(lab.router):
                    Firewall().load_set(fwbench.SET_NAME, prefixes)
                    Firewall().replace(rules, {})
            xdp = send_all(lab, taps, frames, xdp=True, final_settle=final_settle)
            if firewall:
                with netns(lab.router):
                    counters = Firewall().counters()
                xdp.fw_rules = len(counters)
                xdp.fw_allowed = sum(c.packets for c in counters if c.rule.action == "allow" and c.position in (1, 2))
            forwarded = reason_packets(lab).get(abi.Reason.FORWARD.name.lower(), 0)
            with netns(lab.router):
                lookups = Router().lookup_counters()
        finally:
            lab.xdprouter("detach", "--all", check=False)
    finally:
        taps.close()
    return kernel, xdp, forwarded, lookups


def differing(kernel: Run, xdp: Run) -> list[int]:
    """The frames whose outputs are not the same in both runs."""
    return [i for i in range(len(kernel.outputs)) if outputs_key(kernel.outputs[i]) != outputs_key(xdp.outputs[i])]

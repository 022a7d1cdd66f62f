"""The differential test (test_differential.py) at jumbo sizes: the same lab
and harness, with h1's side at MTU 9000 and h2's at 8000, so frames up to
the ingress MTU arrive as multi-buffer XDP frames; frames filling the egress
MTU, one byte over it with DF set and clear, filling the ingress MTU, padded,
cut short and with TTL 1, both families, compared byte for byte with Linux."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scapy.layers.inet import TCP

from xdprouter.lab import Lab

from . import corpus, harness

INGRESS_MTU = 9000  # h1 — veth1
EGRESS_MTU = 8000  # veth2 — h2

CASES: list[tuple[str, Callable[[corpus.Ctx], Any]]] = [
    ("v4 jumbo = egress mtu df", lambda c: c.udp4(tot_len=EGRESS_MTU, flags="DF")),
    ("v4 jumbo = egress mtu no df", lambda c: c.udp4(tot_len=EGRESS_MTU)),
    ("v4 jumbo > egress mtu df", lambda c: c.udp4(tot_len=EGRESS_MTU + 1, flags="DF")),
    ("v4 jumbo > egress mtu no df", lambda c: c.udp4(tot_len=EGRESS_MTU + 1)),
    ("v4 jumbo = ingress mtu df", lambda c: c.udp4(tot_len=INGRESS_MTU, flags="DF")),
    ("v4 jumbo = ingress mtu no df", lambda c: c.udp4(tot_len=INGRESS_MTU)),
    ("v4 jumbo padded", lambda c: bytes(c.udp4(tot_len=EGRESS_MTU - 100, flags="DF")) + bytes(60)),
    ("v4 jumbo cut short", lambda c: bytes(c.udp4(tot_len=EGRESS_MTU, flags="DF"))[:-1]),
    ("v4 jumbo ttl 1", lambda c: c.udp4(tot_len=EGRESS_MTU, flags="DF", ttl=1)),
    ("v4 jumbo tcp", lambda c: c.eth() / c.ip(flags="DF") / TCP(sport=40000, dport=80) / c.pay(7000)),
    ("v6 jumbo = egress mtu", lambda c: c.udp6(tot_len=EGRESS_MTU)),
    ("v6 jumbo > egress mtu", lambda c: c.udp6(tot_len=EGRESS_MTU + 1)),
    ("v6 jumbo = ingress mtu", lambda c: c.udp6(tot_len=INGRESS_MTU)),
    ("v6 jumbo padded", lambda c: bytes(c.udp6(tot_len=EGRESS_MTU - 100)) + bytes(60)),
    ("v6 jumbo cut short", lambda c: bytes(c.udp6(tot_len=EGRESS_MTU))[:-1]),
    ("v6 jumbo hop limit 1", lambda c: c.udp6(tot_len=EGRESS_MTU, hlim=1)),
]


def test_jumbo_frames_like_linux(lab: Lab) -> None:
    macs = harness.router_lab(lab, harness.VARIANTS["plain"])
    for ns, iface, mtu in (
        (lab.h1.ns, lab.h1.iface, INGRESS_MTU),
        (lab.router, "veth1", INGRESS_MTU),
        (lab.router, "veth2", EGRESS_MTU),
        (lab.h2.ns, lab.h2.iface, EGRESS_MTU),
    ):
        lab.ip(ns, "link", "set", iface, "mtu", str(mtu))
    frames = []
    for index, (name, build) in enumerate(CASES):
        data = build(corpus.Ctx(macs, index))
        frames.append(corpus.Frame(name, data if isinstance(data, bytes) else bytes(data)))
    assert max(len(f.data) for f in frames) == 14 + INGRESS_MTU
    kernel, xdp, forwarded, _ = harness.run_both(lab, frames)
    harness.dump(frames, kernel, xdp)
    counted = [f"#{i} {frames[i].name}: {r}" for i, r in enumerate(xdp.reasons) if not r.endswith(" x1")]
    assert not counted, "XDP did not count each frame exactly once:\n" + "\n".join(counted)
    bad = harness.differing(kernel, xdp)
    assert not bad, harness.report(frames, kernel, xdp, bad)
    assert forwarded >= 6, f"the fast path forwarded only {forwarded} jumbo frames"
    silent = [frames[i].name for i in range(len(frames)) if not kernel.outputs[i]]
    assert len(silent) <= 3, f"suspiciously many frames without output: {silent}"

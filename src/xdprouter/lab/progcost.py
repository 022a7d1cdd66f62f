"""The router program's own costs, by BPF_PROG_RUN: per verdict path, on the
forwarding path (frames written afresh by the generator chain), and its
instruction counts."""

from __future__ import annotations

import socket

from ..dataplane import bpf
from ..router import Router
from . import netns
from .rig import Bench, Case, build_frames
from .traffic import Vary


def program_costs(bench: Bench, repeat: int = 200_000) -> dict[str, float]:
    """ns per frame of the program alone on the paths that leave a frame
    as it is (BPF_PROG_RUN repeat reruns one buffer, so a forwarded frame
    would be rewritten again and again: forwarding's own cost comes from
    bpf_stats during the live runs instead)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Ether

    lab = bench.lab
    eth = Ether(dst=bench.router_mac, src=bench.host_mac)
    lab.ip(lab.router, "route", "add", "blackhole", "10.202.0.0/16")
    paths = {
        "pass ttl_expired": eth / IP(src=lab.h1.ip4, dst=lab.h2.ip4, ttl=1) / UDP() / (b"\0" * 18),
        "pass not_our_mac": Ether(dst="02:00:00:00:00:99") / IP(src=lab.h1.ip4, dst=lab.h2.ip4) / UDP(),
        "pass not_ip (ARP)": Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=lab.h1.gw4),
        "drop blackhole": eth / IP(src=lab.h1.ip4, dst="10.202.0.1") / UDP() / (b"\0" * 18),
        "pass no route (ipv6)": eth / IPv6(src=lab.h1.ip6, dst="fd99::1") / UDP() / (b"\0" * 2),
    }
    out: dict[str, float] = {}
    with bench.configured("xdprouter"), netns(lab.router):
        router = Router()
        for name, pkt in paths.items():
            out[name] = router.test_run(bytes(pkt), "veth1", repeat=repeat).duration_ns
    return out


def forwarding_costs(bench: Bench, cases: list[Case], repeat: int = 300_000) -> dict[str, dict[str, float]]:
    """ns per frame of each program on the forwarding path, BPF_PROG_RUN
    with repeat: the generator writes every frame afresh and tail-calls the
    program (traffic.send_through), nothing is sent (no veth, no sink, and
    so no route hint: it lives one receive batch of carried-out
    redirects); the generator's own cost, measured alone, is taken off.
    Best of 3."""
    lab = bench.lab
    with netns(lab.router):
        veth1 = socket.if_nametoindex(lab.router_ifaces[0])
    out: dict[str, dict[str, float]] = {}
    for config in ("xdprouter", "reference"):
        with bench.configured(config), netns(lab.router):
            if config == "xdprouter":
                info = Router().program_info()
                assert info is not None
                prog = bpf.Program.from_id(info.id)
            else:
                assert bench._reference is not None
                prog = bpf.Program(bench._reference.program("xdp_reference").fd)
            try:
                for case in cases:
                    f = build_frames(lab, case, bench.macs, bench.table_routes)
                    ns = _best_ns(bench, prog, veth1, f.a, repeat, f.vary_a) - _best_ns(
                        bench, None, veth1, f.a, repeat, f.vary_a
                    )
                    out.setdefault(case.name, {})[config] = float(max(0, ns))
            finally:
                prog.close()  # a no-op for the reference's borrowed fd
    return out


def _best_ns(bench: Bench, prog: bpf.Program | None, ifindex: int, frame: bytes, repeat: int, vary: Vary) -> int:
    return min(bench.traffic.send_through(prog, ifindex, frame, repeat, vary).ns_per_frame for _ in range(3))


def instructions(bench: Bench) -> dict[str, dict[str, int]]:
    out = {}
    with bench.configured("xdprouter"), netns(bench.lab.router):
        info = Router().program_info()
        assert info is not None
        out["xdprouter"] = {"verified": info.verified_insns, "xlated": info.xlated_prog_len // 8}
    with bench.configured("reference"):
        assert bench._reference is not None
        info = bench._reference.program("xdp_reference").info()
        out["reference"] = {"verified": info.verified_insns, "xlated": info.xlated_prog_len // 8}
    return out

"""What capture costs the fast path: the router program's time per frame
(BPF_PROG_RUN, ``repeat`` runs of one forwarded 64-byte IPv4 frame) with no
capture running, with a capture whose filter leaves the frame out (another
interface; the same interface, another verdict), with one that takes every
frame, and, with ``--baseline OBJ``, for a router object built without the
capture hook (e.g. from the commit before it), in the same lab.

    python -m xdprouter.lab.capbench [--repeat 200000] [--reps 5] [--baseline OBJ]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from ..capture import Capture
from ..router import Router
from . import Lab, netns


def run(repeat: int = 200_000, reps: int = 5, baseline: str | None = None) -> dict[str, float]:
    results: dict[str, list[float]] = {}
    with Lab(f"cb{os.getpid() % 10000}") as lab:
        lab.run(lab.router, "ping", "-n", "-c", "1", "-W", "2", lab.h2.ip4)
        frame = bytes(
            Ether(dst=lab.mac(lab.router, "veth1"), src=lab.mac(lab.h1.ns, "eth0"))
            / IP(src=lab.h1.ip4, dst=lab.h2.ip4)
            / UDP(sport=1000, dport=9)
            / (b"\0" * 18)
        )
        with netns(lab.router):
            router = Router()

            def ns_per_frame() -> float:
                return router.test_run(frame, "veth1", repeat=repeat).duration_ns

            if baseline:
                base = Router(baseline)
                base.attach(list(lab.router_ifaces), mode="native")
                for _ in range(reps):
                    results.setdefault("router without the capture hook (baseline)", []).append(
                        base.test_run(frame, "veth1", repeat=repeat).duration_ns
                    )
                base.detach(None)
            router.attach(list(lab.router_ifaces), mode="native")

            states = [
                ("no capture (before)", None),
                ("capture on veth2 (frame filtered out)", ("veth2", None)),
                ("capture on veth1, --verdict drop (filtered out)", ("veth1", ["drop"])),
                ("capture on veth1, every frame", ("veth1", None)),
                ("no capture (after)", None),
            ]
            for _ in range(reps):
                for name, spec in states:
                    if spec is None:
                        results.setdefault(name, []).append(ns_per_frame())
                        continue
                    with Capture(spec[0], spec[1], snaplen=128) as cap:
                        results.setdefault(name, []).append(ns_per_frame())
                        cap.poll(0)
            router.detach(None)
    return {name: statistics.median(v) for name, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--baseline", metavar="OBJ", help="a router object without the capture hook")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.repeat, args.reps, args.baseline)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        for name, ns in r.items():
            print(f"{ns:8.1f} ns/frame  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Count the frames arriving on an interface per flow, in Python, through
AF_XDP; sample one frame in N; write the statistics as JSON.

The frames are taken from the interface (an XDP program redirects every one
of them to the sockets): run it on a mirror port, a tap, or a lab interface.

    examples/xsk_flow_counter.py eth1 --seconds 10 --sample 100 --out flows.json
    examples/xsk_flow_counter.py eth1 --count 1000 --out -      # JSON on stdout

A flow is (protocol, source, destination, source port, destination port) for
IPv4 and IPv6 (ports for TCP and UDP), or the EtherType for anything else.
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import sys
import time
from collections import defaultdict
from ipaddress import IPv4Address, IPv6Address

from xdprouter import xsk
from xdprouter.errors import XdpRouterError

PORTS = {6, 17}  # TCP, UDP


def flow_of(frame: memoryview) -> tuple[object, ...]:
    """The flow key of one frame, read in place from the UMEM."""
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    if ethertype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        src, dst = IPv4Address(bytes(frame[26:30])), IPv4Address(bytes(frame[30:34]))
        l4 = 14 + ihl
    elif ethertype == 0x86DD and len(frame) >= 54:
        proto = frame[20]
        src, dst = IPv6Address(bytes(frame[22:38])), IPv6Address(bytes(frame[38:54]))
        l4 = 54
    else:
        return (f"ethertype 0x{ethertype:04x}",)
    if proto in PORTS and len(frame) >= l4 + 4:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        return (proto, str(src), str(dst), sport, dport)
    return (proto, str(src), str(dst))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("iface")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--count", type=int, default=None, help="stop after this many frames")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="keep one frame in N (hex) per flow")
    p.add_argument("--out", default="-", help="JSON file to write (- for stdout)")
    args = p.parse_args(argv)
    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    flows: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0])
    samples: dict[tuple[object, ...], list[str]] = defaultdict(list)
    total = 0
    try:
        with xsk.Port(args.iface) as port:
            print(f"counting on {args.iface}, {len(port.sockets)} queue(s)", file=sys.stderr, flush=True)
            start = time.monotonic()
            deadline = None if args.seconds is None else start + args.seconds
            while not stop and (args.count is None or total < args.count):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                for frame in port.recv(64, timeout=0.1):
                    key = flow_of(frame)
                    counter = flows[key]
                    counter[0] += 1
                    counter[1] += len(frame)
                    total += 1
                    if args.sample and total % args.sample == 0:
                        samples[key].append(frame.hex())
            elapsed = time.monotonic() - start
            stats = port.stats()
    except XdpRouterError as e:
        print(f"xsk_flow_counter: error: {e}", file=sys.stderr)
        return 1
    report = {
        "iface": args.iface,
        "seconds": round(elapsed, 3),
        "frames": total,
        "dropped_by_kernel": stats.rx_dropped,
        "flows": [
            {"flow": list(key), "packets": c[0], "bytes": c[1], "samples": samples.get(key, [])}
            for key, c in sorted(flows.items(), key=lambda kv: -kv[1][0])
        ],
    }
    text = json.dumps(report, indent=2)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

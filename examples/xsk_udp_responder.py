#!/usr/bin/env python3
"""A UDP echo service (RFC 862) in user space: frames arrive through AF_XDP,
the reply is built in Python in the request's own UMEM buffer and sent back
from there through the same socket (``send_in_place``: no copy). It
answers ARP for its address too, since every frame of the interface comes
to it; everything else is counted and dropped.

    examples/xsk_udp_responder.py eth1 --ip 10.1.0.1 --port 7
    examples/xsk_udp_responder.py eth1 --ip 10.1.0.1 --count 10   # stop after 10 replies

The kernel never sees these frames: no socket listens on the port, and the
interface's own address needs no configuration (--ip is what it answers for).
"""

from __future__ import annotations

import argparse
import signal
import struct
import sys
from ipaddress import IPv4Address

from xdprouter import netlink, xsk
from xdprouter.errors import XdpRouterError


def answer_arp(frame: memoryview, mac: bytes, ip: bytes) -> bool:
    """Turn an ARP request for ``ip`` into its reply, in place; False if it is not one."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[20:22] != b"\x00\x01" or frame[38:42] != ip:
        return False
    sha, spa = bytes(frame[22:28]), bytes(frame[28:32])
    frame[0:12] = sha + mac
    frame[20:42] = b"\x00\x02" + mac + ip + sha + spa
    return True


def answer_udp(frame: memoryview, ip: bytes, port: int) -> bool:
    """Turn a UDP datagram to ``ip``:``port`` (IPv4, no options) into its
    echo, in place: MACs, addresses and ports swapped. Swapping leaves both
    checksums right (the IPv4 header's and the pseudo-header's sums do not
    depend on the order). False if it is not one."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[14] != 0x45 or frame[23] != 17:
        return False
    if frame[30:34] != ip or struct.unpack_from("!H", frame, 36)[0] != port:
        return False
    frame[0:12] = bytes(frame[6:12]) + bytes(frame[0:6])
    frame[26:34] = bytes(frame[30:34]) + bytes(frame[26:30])
    frame[34:38] = bytes(frame[36:38]) + bytes(frame[34:36])
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("iface")
    p.add_argument("--ip", required=True, type=IPv4Address, help="the IPv4 address to answer for")
    p.add_argument("--port", type=int, default=7, help="UDP port (default 7, echo)")
    p.add_argument("--count", type=int, default=None, help="stop after this many replies")
    args = p.parse_args(argv)
    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ip = args.ip.packed
    replies = ignored = 0
    try:
        (link,) = netlink.resolve([args.iface])
        mac = bytes.fromhex(link.mac.replace(":", ""))
        with xsk.Port(args.iface) as port:
            print(f"answering UDP {args.ip}:{args.port} on {args.iface}", file=sys.stderr, flush=True)
            while not stop and (args.count is None or replies < args.count):
                batch = port.recv(64, timeout=0.1)
                sock = batch.socket  # answer on the queue the request came in on
                if sock is None:  # nothing came
                    continue
                answers = []
                for i, frame in enumerate(batch):
                    if answer_udp(frame, ip, args.port):
                        replies += 1
                    elif not answer_arp(frame, mac, ip):
                        ignored += 1
                        continue
                    answers.append(i)
                sent = 0
                while sent < len(answers):  # from the buffers they came in: no copy
                    sent += sock.send_in_place(batch, answers[sent:])
                sock.flush()
    except XdpRouterError as e:
        print(f"xsk_udp_responder: error: {e}", file=sys.stderr)
        return 1
    print(f"{replies} replies, {ignored} frames ignored", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

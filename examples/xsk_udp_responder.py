#!/usr/bin/env python3
"""A UDP echo service (RFC 862) in user space: frames arrive through AF_XDP,
the reply is built in Python and sent back through the same socket. It
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


def checksum(data: bytes | memoryview) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp_reply(frame: memoryview, mac: bytes, ip: bytes) -> bytes | None:
    """The answer to an ARP request for ``ip``, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[20:22] != b"\x00\x01" or frame[38:42] != ip:
        return None
    sha, spa = bytes(frame[22:28]), bytes(frame[28:32])
    return sha + mac + b"\x08\x06" + bytes(frame[14:20]) + b"\x00\x02" + mac + ip + sha + spa


def udp_reply(frame: memoryview, ip: bytes, port: int) -> bytes | None:
    """The echo of a UDP datagram to ``ip``:``port`` (IPv4, no options), or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[14] != 0x45 or frame[23] != 17:
        return None
    if frame[30:34] != ip or struct.unpack_from("!H", frame, 36)[0] != port:
        return None
    total = struct.unpack_from("!H", frame, 16)[0]
    payload = bytes(frame[42 : 14 + total])
    src, sport = bytes(frame[26:30]), struct.unpack_from("!H", frame, 34)[0]
    udp_len = 8 + len(payload)
    pseudo = ip + src + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", port, sport, udp_len, 0) + payload
    udp_sum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0, ip, src)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    eth = bytes(frame[6:12]) + bytes(frame[0:6]) + b"\x08\x00"
    return eth + hdr + udp


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
                if not batch:
                    continue
                sock = port.last  # answer on the queue the request came in on
                out = []
                for frame in batch:
                    reply = udp_reply(frame, ip, args.port) or arp_reply(frame, mac, ip)
                    if reply is None:
                        ignored += 1
                    else:
                        out.append(reply)
                        replies += frame[12:14] == b"\x08\x00"
                while out:
                    out = out[sock.send(out) :]
                sock.flush()
    except XdpRouterError as e:
        print(f"xsk_udp_responder: error: {e}", file=sys.stderr)
        return 1
    print(f"{replies} replies, {ignored} frames ignored", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

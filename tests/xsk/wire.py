"""Frames to and from the lab's hosts for the xsk tests."""

from __future__ import annotations

import socket
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from xdprouter import xsk
from xdprouter.lab import Lab, netns

ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33


def frames(lab: Lab, n: int, tag: bytes = b"xsk") -> list[bytes]:
    r1, h1 = lab.mac(lab.router, "veth1"), lab.mac(lab.h1.ns, "eth0")
    return [
        bytes(
            Ether(dst=r1, src=h1)
            / IP(src="10.1.0.2", dst="10.1.0.1", id=i)
            / UDP(sport=40000 + i, dport=9)
            / Raw(tag + i.to_bytes(4, "big") * (1 + i % 50))
        )
        for i in range(n)
    ]


def quiet_h1(lab: Lab) -> None:
    """No frames of h1's own (IPv6 router solicitations, MLD reports) among the test's."""
    lab.sysctl(lab.h1.ns, "net.ipv6.conf.eth0.disable_ipv6", "1")


def raw_socket(ns: str, iface: str) -> socket.socket:
    """A packet socket on ``iface`` with room for thousands of frames."""
    with netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    s.bind((iface, 0))
    return s


def send_from_h1(lab: Lab, sent: list[bytes]) -> None:
    h1 = raw_socket(lab.h1.ns, "eth0")
    try:
        for f in sent:
            h1.send(f)
    finally:
        h1.close()


def receive_all(port: xsk.Port, n: int, timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += [bytes(f) for f in port.recv(64, timeout=0.2)]
    return got


PACKET_OUTGOING = 4


def incoming(sock: socket.socket, n: int, tag: bytes, timeout: float = 5.0) -> list[bytes]:
    """Up to ``n`` frames holding ``tag`` that ``sock``'s interface
    received (not those it sent), in order of arrival."""
    got: list[bytes] = []
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(4096)
        except TimeoutError:
            continue
        if addr[2] != PACKET_OUTGOING and tag in data:
            got.append(data)
    return got


def swap_macs(frame: bytes) -> bytes:
    return frame[6:12] + frame[0:6] + frame[12:]

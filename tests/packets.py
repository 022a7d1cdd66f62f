"""Frames for the data-plane tests, built with scapy, and the bytes Linux
forwarding would send for them (computed here independently of the program).

Builders return ``bytes`` and take the MACs of the lab (:class:`Macs`) so that
test tables can be written before a lab exists.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD

H1_IP4, H2_IP4 = "10.1.0.2", "10.2.0.2"
H1_IP6, H2_IP6 = "fd01::2", "fd02::2"
PAYLOAD = bytes(range(48))


@dataclass(frozen=True)
class Macs:
    """The MACs on the path h1 — (veth1) r (veth2) — h2."""

    h1: str
    r1: str
    r2: str
    h2: str

    def reversed(self) -> Macs:
        """The MACs of the way back, h2 — (veth2) r (veth1) — h1."""
        return Macs(h1=self.h2, r1=self.r2, r2=self.r1, h2=self.h1)


def ether(macs: Macs, dst: str | None = None, src: str | None = None, type: int | None = None) -> Ether:
    """h1 -> router's veth1 unless told otherwise."""
    if type is None:
        return Ether(dst=dst or macs.r1, src=src or macs.h1)
    return Ether(dst=dst or macs.r1, src=src or macs.h1, type=type)


def ipv4(
    macs: Macs,
    l4: Packet | bytes | None = None,
    *,
    mac_dst: str | None = None,
    **ip: Any,
) -> bytes:
    """An IPv4 frame from h1 to h2 (UDP unless ``l4`` says otherwise);
    ``ip`` overrides IP header fields (src, dst, ttl, flags, frag, ...)."""
    fields: dict[str, Any] = {"src": H1_IP4, "dst": H2_IP4, "ttl": 64, "id": 0x1234, "tos": 0x28}
    fields.update(ip)
    body = UDP(sport=40000, dport=5201) / Raw(PAYLOAD) if l4 is None else l4
    return bytes(ether(macs, dst=mac_dst) / IP(**fields) / body)


def ipv6(
    macs: Macs,
    l4: Packet | bytes | None = None,
    *,
    mac_dst: str | None = None,
    **ip6: Any,
) -> bytes:
    """An IPv6 frame from h1 to h2 (UDP unless ``l4`` says otherwise)."""
    fields: dict[str, Any] = {"src": H1_IP6, "dst": H2_IP6, "hlim": 64, "tc": 0x28, "fl": 0x12345}
    fields.update(ip6)
    body = UDP(sport=40000, dport=5201) / Raw(PAYLOAD) if l4 is None else l4
    return bytes(ether(macs, dst=mac_dst) / IPv6(**fields) / body)


def sized(build: Any, macs: Macs, l3_len: int, **kw: Any) -> bytes:
    """A frame from ``build`` (ipv4/ipv6) whose IP packet is ``l3_len`` bytes."""
    base = len(build(macs, UDP(sport=40000, dport=5201), **kw)) - ETH_HLEN
    return build(macs, UDP(sport=40000, dport=5201) / Raw(bytes(l3_len - base)), **kw)


def eth_padded(frame: bytes, minimum: int = 60) -> bytes:
    """``frame`` padded with zeros to the Ethernet minimum, as a NIC would."""
    return frame + bytes(max(0, minimum - len(frame)))


def patch(frame: bytes, offset: int, data: bytes) -> bytes:
    return frame[:offset] + data + frame[offset + len(data) :]


def ones_sum(data: bytes) -> int:
    """The 16-bit one's complement sum, folded (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_checksum_ok(header: bytes) -> bool:
    return ones_sum(header) == 0xFFFF


def ipv4_set_checksum(frame: bytes, check: int) -> bytes:
    return patch(frame, ETH_HLEN + 10, struct.pack("!H", check))


def ipv4_with_checksum(macs: Macs, check: int, **ip: Any) -> bytes:
    """An IPv4 frame whose (valid) header checksum is exactly ``check``: the IP
    id is chosen to make it so.  ``check`` 0xffff is the "negative zero": the
    header's canonical checksum is 0x0000 and the field holds 0xffff instead."""
    want = 0x0000 if check == 0xFFFF else check
    frame = ipv4(macs, id=0, **ip)
    header = ipv4_set_checksum(frame, 0)[ETH_HLEN : ETH_HLEN + 20]
    # checksum = ~(S + id)  =>  id = ~checksum - S  (one's complement)
    ident = ones_sum(struct.pack("!HH", ~want & 0xFFFF, ~ones_sum(header) & 0xFFFF))
    frame = ipv4(macs, id=ident, **ip)
    assert struct.unpack_from("!H", frame, ETH_HLEN + 10)[0] == want, "could not construct the checksum"
    return ipv4_set_checksum(frame, check)


def ip_decrease_ttl_check(check: int) -> int:
    """The checksum the kernel's ip_decrease_ttl() writes (little-endian host),
    given the header's checksum as read from the wire."""
    host = ((check & 0xFF) << 8) | (check >> 8)  # the __sum16 as a host integer
    host += 0x0001  # htons(0x0100)
    host = (host + (host >= 0xFFFF)) & 0xFFFF
    return ((host & 0xFF) << 8) | (host >> 8)


def linux_forwarded(frame: bytes, dst_mac: str, src_mac: str) -> bytes:
    """What ip_forward()/ip6_forward() send for ``frame``: padding trimmed to
    the IP length, TTL or hop limit minus one (IPv4 checksum updated the
    kernel's way), new MACs, every other byte unchanged."""
    out = bytearray(frame)
    out[0:6] = bytes.fromhex(dst_mac.replace(":", ""))
    out[6:12] = bytes.fromhex(src_mac.replace(":", ""))
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype == ETH_P_IP:
        (tot_len,) = struct.unpack_from("!H", frame, ETH_HLEN + 2)
        del out[ETH_HLEN + tot_len :]
        out[ETH_HLEN + 8] -= 1
        (check,) = struct.unpack_from("!H", frame, ETH_HLEN + 10)
        struct.pack_into("!H", out, ETH_HLEN + 10, ip_decrease_ttl_check(check))
    elif ethertype == ETH_P_IPV6:
        (plen,) = struct.unpack_from("!H", frame, ETH_HLEN + 4)
        del out[ETH_HLEN + 40 + plen :]
        out[ETH_HLEN + 7] -= 1
    else:
        raise ValueError(f"not IP: ethertype {ethertype:#06x}")
    return bytes(out)


def scapy_checksum(frame: bytes) -> int:
    """The IPv4 header checksum scapy computes from scratch for ``frame``."""
    ip = Ether(frame)[IP].copy()
    ip.chksum = None
    return int(IP(bytes(ip))[IP].chksum)

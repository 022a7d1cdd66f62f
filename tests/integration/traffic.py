"""Real traffic through the lab: TCP transfers checked end to end, UDP flows,
pings, and the counters that tell where each frame went.

Sockets are created inside a namespace (``netns``) and then used from
ordinary threads: a socket stays in the namespace it was created in.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from xdprouter.lab import Lab, Transfer, netns, tcp_transfer

__all__ = ["Transfer", "tcp_transfer"]

VERDICTS = ("forwarded", "tx", "passed", "dropped", "aborted", "steered")
# Linux values (<linux/in.h>, <asm-generic/socket.h>); Python 3.11 lacks the names
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


# -- counters ---------------------------------------------------------------


def stats(lab: Lab) -> dict[str, dict[str, object]]:
    """``xdprouter stats --json``, parsed (a separate process every time)."""
    out = json.loads(lab.xdprouter("stats", "--json").stdout)
    assert isinstance(out, dict)
    return out


def status(lab: Lab) -> list[dict[str, object]]:
    out = json.loads(lab.xdprouter("status", "--json").stdout)
    assert isinstance(out, list)
    return out


def verdict(snap: dict[str, dict[str, object]], iface: str, name: str) -> int:
    """Packets with verdict ``name`` counted on ``iface`` (0 if absent)."""
    counters = snap.get(iface)
    if counters is None:
        return 0
    value = counters[name]
    assert isinstance(value, int)
    return value


def verdict_bytes(snap: dict[str, dict[str, object]], iface: str, name: str) -> int:
    counters = snap.get(iface)
    if counters is None:
        return 0
    by = counters["bytes"]
    assert isinstance(by, dict)
    return int(by[name])


def reason(snap: dict[str, dict[str, object]], iface: str, name: str) -> int:
    """Packets counted under reason ``name`` on ``iface`` (0 if absent)."""
    counters = snap.get(iface)
    if counters is None:
        return 0
    reasons = counters["reasons"]
    assert isinstance(reasons, dict)
    entry = reasons.get(name)
    return int(entry["packets"]) if entry else 0


def link_stats(lab: Lab, ns: str, iface: str) -> dict[str, int]:
    """The kernel's own interface counters (``ip -s link``): rx/tx packets and bytes."""
    out = json.loads(lab.ip(ns, "-s", "-j", "link", "show", iface).stdout)
    s = out[0]["stats64"]
    return {
        "rx_packets": s["rx"]["packets"],
        "rx_bytes": s["rx"]["bytes"],
        "tx_packets": s["tx"]["packets"],
        "tx_bytes": s["tx"]["bytes"],
    }


def xdp_of(lab: Lab, ns: str, iface: str) -> dict[str, object] | None:
    """The XDP attachment ``ip link`` reports for ``iface``, or None."""
    out = json.loads(lab.ip(ns, "-d", "-j", "link", "show", iface).stdout)
    xdp = out[0].get("xdp")
    if not xdp:
        return None
    assert isinstance(xdp, dict)
    return xdp


# -- ping -------------------------------------------------------------------


def ping(lab: Lab, ns: str, dst: str, *opts: str, count: int = 3, check: bool = False) -> tuple[int, str]:
    """Ping from ``ns``; returns (exit status, output)."""
    six = ["-6"] if ":" in dst else []
    proc = lab.run(
        ns,
        "ping",
        *six,
        "-n",
        "-c",
        str(count),
        "-i",
        "0.1",
        "-W",
        "2",
        *opts,
        dst,
        check=False,
        timeout=10 + count,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ping {dst} from {ns} failed:\n{proc.stdout}{proc.stderr}")
    return proc.returncode, proc.stdout + proc.stderr


def received(output: str) -> int:
    """Replies received, from ping's summary line."""
    for line in output.splitlines():
        if "packets transmitted" in line:
            return int(line.split(",")[1].split()[0])
    raise AssertionError(f"no summary in ping output:\n{output}")


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# -- TCP ----------------------------------------------------------------------


# -- UDP ----------------------------------------------------------------------


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def udp_socket(ns: str, addr: str, port: int = 0) -> socket.socket:
    """A UDP socket in ``ns`` bound to (addr, port), reporting the arrival interface."""
    family = _family(addr)
    with netns(ns):
        s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # Frames that come through an XDP redirect are a page each: without
        # room, a burst of small datagrams overflows the default buffer.
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        if family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        s.bind((addr, port))
    except BaseException:
        s.close()
        raise
    return s


@dataclass(frozen=True)
class Datagram:
    payload: bytes
    src: tuple[str, int]
    ifindex: int  # the interface it arrived on


def recv_datagrams(s: socket.socket, expected: int, timeout: float = 3.0) -> list[Datagram]:
    """Up to ``expected`` datagrams, waiting at most ``timeout`` seconds in total."""
    out: list[Datagram] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, anc, _flags, src = s.recvmsg(65535, socket.CMSG_SPACE(64))
        except TimeoutError:
            break
        ifindex = 0
        for level, kind, raw in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                ifindex = struct.unpack_from("=i", raw, 0)[0]
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                ifindex = struct.unpack_from("=I", raw, 16)[0]
        out.append(Datagram(data, (src[0], src[1]), ifindex))
    return out


def ifindex(lab: Lab, ns: str, iface: str) -> int:
    out = json.loads(lab.ip(ns, "-j", "link", "show", iface).stdout)
    return int(out[0]["ifindex"])


def add_veth(
    lab: Lab, router_iface: str, host_ns: str, host_iface: str, router_addrs: list[str], host_addrs: list[str]
) -> None:
    """A further veth pair router <-> host, set up like the lab's own (lab.py has only two)."""
    r = lab.router
    lab.ip(r, "link", "add", router_iface, "type", "veth", "peer", "name", host_iface, "netns", host_ns)
    for ns, iface, addrs in ((r, router_iface, router_addrs), (host_ns, host_iface, host_addrs)):
        lab.sysctl(ns, f"net.ipv6.conf.{iface}.accept_dad", "0")
        for a in addrs:
            lab.ip(ns, "addr", "add", a, "dev", iface, *(["nodad"] if ":" in a else []))
        lab.ip(ns, "link", "set", iface, "up")
        lab.run(ns, "ethtool", "-K", iface, "tx", "off", "gro", "on")

"""A lab of network namespaces: host — router — host, joined by veth pairs.

Used by the demo, the tests and the benchmark. Everything it creates carries
its prefix and is removed by ``close()`` (or leaving the ``with`` block), even
when what ran inside failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the body of the block inside network namespace ``name``."""
    with open("/proc/self/ns/net") as home, open(f"/run/netns/{name}") as target:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")


def sh(
    *cmd: str, check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure raises with its stderr in the message."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class Host:
    ns: str
    iface: str
    ip4: str
    ip6: str
    gw4: str
    gw6: str


@dataclass(frozen=True)
class Transfer:
    sent: int
    received: int
    sent_sha256: str
    received_sha256: str
    seconds: float

    @property
    def intact(self) -> bool:
        return self.sent == self.received and self.sent_sha256 == self.received_sha256


class Lab:
    """h1 (10.1.0.2, fd01::2) — r (veth1 | veth2) — h2 (10.2.0.2, fd02::2)."""

    def __init__(self, prefix: str = "xdpr") -> None:
        self.prefix = prefix
        self.router = f"{prefix}-r"
        self.h1 = Host(f"{prefix}-h1", "eth0", "10.1.0.2", "fd01::2", "10.1.0.1", "fd01::1")
        self.h2 = Host(f"{prefix}-h2", "eth0", "10.2.0.2", "fd02::2", "10.2.0.1", "fd02::1")
        self.router_ifaces = ("veth1", "veth2")
        self.namespaces = [self.h1.ns, self.router, self.h2.ns]

    def __enter__(self) -> Lab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "-n", ns, *args, check=check)

    def run(self, ns: str, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout)

    def popen(self, ns: str, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.run(ns, "sysctl", "-qw", f"{key}={value}")

    def build(self) -> None:
        self.close()
        for ns in self.namespaces:
            sh("ip", "netns", "add", ns)
            self.ip(ns, "link", "set", "lo", "up")
        for host, rif in ((self.h1, "veth1"), (self.h2, "veth2")):
            self._wire(host, rif)
        r = self.router
        self.sysctl(r, "net.ipv4.ip_forward", "1")
        self.sysctl(r, "net.ipv6.conf.all.forwarding", "1")

    def _wire(self, host: Host, rif: str) -> None:
        r = self.router
        self.ip(r, "link", "add", rif, "type", "veth", "peer", "name", host.iface, "netns", host.ns)
        for ns, iface in ((r, rif), (host.ns, host.iface)):
            self.sysctl(ns, f"net.ipv6.conf.{iface}.accept_dad", "0")
            self.ip(ns, "link", "set", iface, "up")
        self.ip(r, "addr", "add", f"{host.gw4}/24", "dev", rif)
        self.ip(r, "addr", "add", f"{host.gw6}/64", "dev", rif, "nodad")
        self.ip(host.ns, "addr", "add", f"{host.ip4}/24", "dev", host.iface)
        self.ip(host.ns, "addr", "add", f"{host.ip6}/64", "dev", host.iface, "nodad")
        self.ip(host.ns, "route", "add", "default", "via", host.gw4)
        self.ip(host.ns, "-6", "route", "add", "default", "via", host.gw6)
        # Hosts: checksums computed in software (TCP through an XDP redirect
        # breaks with tx offload on veth), and GRO on so the veth accepts
        # frames the router redirects to it.
        self.run(host.ns, "ethtool", "-K", host.iface, "tx", "off", "gro", "on")
        self.run(r, "ethtool", "-K", rif, "tx", "off", "gro", "on")

    def mac(self, ns: str, iface: str) -> str:
        out = self.ip(ns, "-o", "link", "show", iface).stdout
        return out.split("link/ether ")[1].split()[0]

    def xdprouter(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The CLI as a separate process inside the router namespace."""
        return self.run(self.router, sys.executable, "-m", "xdprouter.cli", *args, check=check)

    def tcp_transfer(self, src: Host, dst: Host, nbytes: int, *, ipv6: bool = False, port: int = 5201) -> Transfer:
        """Send ``nbytes`` of TCP from ``src`` to ``dst``; hashes taken on both ends."""
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        addr = dst.ip6 if ipv6 else dst.ip4
        with netns(dst.ns):
            server = socket.socket(family, socket.SOCK_STREAM)
        with netns(src.ns):
            client = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((addr, port))
        server.listen(1)
        server.settimeout(30)
        client.settimeout(30)
        received = hashlib.sha256()
        got = [0]

        def receive() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                while chunk := conn.recv(1 << 16):
                    received.update(chunk)
                    got[0] += len(chunk)

        receiver = threading.Thread(target=receive)
        receiver.start()
        sent = hashlib.sha256()
        start = time.monotonic()
        try:
            client.connect((addr, port))
            block = os.urandom(1 << 16)
            left = nbytes
            while left > 0:
                chunk = block[: min(left, len(block))]
                client.sendall(chunk)
                sent.update(chunk)
                left -= len(chunk)
        finally:
            client.close()
            receiver.join(60)
            server.close()
        return Transfer(nbytes, got[0], sent.hexdigest(), received.hexdigest(), time.monotonic() - start)

    def close(self) -> None:
        for ns in self.namespaces:
            if os.path.exists(f"/run/netns/{ns}"):
                sh("ip", "netns", "del", ns, check=False)

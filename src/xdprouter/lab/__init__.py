"""A lab of network namespaces: host — router — host, joined by veth pairs.

Used by the demo, the tests and the benchmark. Everything it creates carries
its prefix and is removed by ``close()`` (or leaving the ``with`` block), even
when what ran inside failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Self

from ..dataplane.syscalls import setns_net


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the body of the block inside network namespace ``name``."""
    with open("/proc/self/ns/net") as home, open(f"/run/netns/{name}") as target:
        setns_net(target.fileno(), name)
        try:
            yield
        finally:
            setns_net(home.fileno(), "home")


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


@dataclass
class Transfer:
    """A TCP transfer checked end to end."""

    size: int
    sent_sha256: str
    received_sha256: str = ""
    received_bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.errors and self.received_bytes == self.size and self.received_sha256 == self.sent_sha256


def tcp_transfer(
    src_ns: str, dst_ns: str, dst_addr: str, size: int = 4 << 20, port: int = 5201, timeout: float = 30.0
) -> Transfer:
    """Send ``size`` random bytes over TCP from ``src_ns`` to ``dst_addr`` in
    ``dst_ns``; the receiver hashes what arrives. Sockets are created inside
    the namespaces and used from threads (a socket stays in its namespace)."""
    family = socket.AF_INET6 if ":" in dst_addr else socket.AF_INET
    payload = os.urandom(size)
    result = Transfer(size=size, sent_sha256=hashlib.sha256(payload).hexdigest())
    with netns(dst_ns):
        listener = socket.socket(family, socket.SOCK_STREAM)
    with netns(src_ns):
        sender = socket.socket(family, socket.SOCK_STREAM)
    start = time.monotonic()
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((dst_addr, port))
        listener.listen(1)
        listener.settimeout(timeout)
        sender.settimeout(timeout)

        def receive() -> None:
            try:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(timeout)
                    digest, count = hashlib.sha256(), 0
                    while chunk := conn.recv(1 << 16):
                        digest.update(chunk)
                        count += len(chunk)
                result.received_sha256, result.received_bytes = digest.hexdigest(), count
            except OSError as e:
                result.errors.append(f"receiver: {e!r}")

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        try:
            sender.connect((dst_addr, port))
            sender.sendall(payload)
            sender.shutdown(socket.SHUT_WR)
        except OSError as e:
            result.errors.append(f"sender: {e!r}")
        finally:
            sender.close()
        receiver.join(timeout + 5)
        if receiver.is_alive():
            result.errors.append("receiver did not finish")
    finally:
        sender.close()
        listener.close()
    result.seconds = time.monotonic() - start
    return result


class Scoped:
    """A context manager around ``_open()`` and ``close()``; ``close()``
    also runs when ``_open()`` failed half way, so nothing is left behind."""

    def _open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lab(Scoped):
    """h1 (10.1.0.2, fd01::2) — r (veth1 | veth2) — h2 (10.2.0.2, fd02::2)."""

    def __init__(self, prefix: str = "xdpr") -> None:
        self.prefix = prefix
        self.router = f"{prefix}-r"
        self.h1 = Host(f"{prefix}-h1", "eth0", "10.1.0.2", "fd01::2", "10.1.0.1", "fd01::1")
        self.h2 = Host(f"{prefix}-h2", "eth0", "10.2.0.2", "fd02::2", "10.2.0.1", "fd02::1")
        self.router_ifaces = ("veth1", "veth2")
        self.namespaces = [self.h1.ns, self.router, self.h2.ns]

    def _open(self) -> None:
        self.build()

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

    def ring_drops(self) -> tuple[int, int]:
        """XDP frames the veth rings refused so far (``ethtool -S``,
        tx_queue_0_xdp_xmit_errors): h1's into the router, and the router's
        into h2. A sender that outruns the NAPI draining a ring loses frames
        there, as at a full NIC ring; the kernel counts each one."""

        def errors(ns: str, iface: str) -> int:
            for line in self.run(ns, "ethtool", "-S", iface).stdout.splitlines():
                name, _, value = line.strip().partition(": ")
                if name == "tx_queue_0_xdp_xmit_errors":
                    return int(value)
            raise RuntimeError(f"ethtool -S {iface} has no tx_queue_0_xdp_xmit_errors")

        return errors(self.h1.ns, self.h1.iface), errors(self.router, self.router_ifaces[1])

    def xdprouter(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The CLI as a separate process inside the router namespace."""
        return self.run(self.router, sys.executable, "-m", "xdprouter.cli", *args, check=check)

    def tcp_transfer(self, src: Host, dst: Host, nbytes: int, *, ipv6: bool = False, port: int = 5201) -> Transfer:
        """Send ``nbytes`` of TCP from ``src`` to ``dst``; hashes taken on both ends."""
        return tcp_transfer(src.ns, dst.ns, dst.ip6 if ipv6 else dst.ip4, nbytes, port)

    def close(self) -> None:
        for ns in self.namespaces:
            if os.path.exists(f"/run/netns/{ns}"):
                sh("ip", "netns", "del", ns, check=False)

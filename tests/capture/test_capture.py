"""xdprouter capture: real frames through the attached router, the pcapng
read back with scapy and tcpdump; kernel filters; nothing left behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgReader

from xdprouter.capture import MAP_CAPTURE, _router_maps
from xdprouter.lab import Lab, netns

ETH_P_ALL = 0x0003


@pytest.fixture
def router(attached_lab: Lab) -> Lab:
    lab = attached_lab
    for dst in ("10.1.0.2", "10.2.0.2"):
        lab.run(lab.router, "ping", "-n", "-c", "1", "-W", "2", dst, timeout=10)
    return lab


def start(lab: Lab, *args: str) -> subprocess.Popen[str]:
    proc = lab.popen(lab.router, sys.executable, "-m", "xdprouter.cli", "capture", *args)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("capturing on"), line + proc.stderr.read()
    return proc


def send(lab: Lab, frames: list[bytes]) -> list[bytes]:
    """Send from h1; return what h2 received of them (tagged b'cap-')."""
    with netns(lab.h2.ns):
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with netns(lab.h1.ns):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    got = []
    with rx, tx:
        rx.bind(("eth0", 0))
        rx.settimeout(0.2)
        tx.bind(("eth0", 0))
        for f in frames:
            tx.send(f)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            try:
                data, addr = rx.recvfrom(4096)
            except TimeoutError:
                continue
            if b"cap-" in data and addr[2] != socket.PACKET_OUTGOING:  # not h2's ICMP errors
                got.append(data)
    return got


def mixed(lab: Lab) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(forwarded, to the router itself, TTL 1) frames from h1."""
    e = Ether(dst=lab.mac(lab.router, "veth1"), src=lab.mac(lab.h1.ns, "eth0"))
    fwd = [
        bytes(e / IP(src="10.1.0.2", dst="10.2.0.2") / UDP(sport=1000 + i) / f"cap-fwd-{i}".encode()) for i in range(5)
    ]
    local = [bytes(e / IP(src="10.1.0.2", dst="10.1.0.1") / UDP(dport=9) / f"cap-loc-{i}".encode()) for i in range(3)]
    ttl1 = [bytes(e / IP(src="10.1.0.2", dst="10.2.0.2", ttl=1) / UDP() / f"cap-ttl-{i}".encode()) for i in range(2)]
    return fwd, local, ttl1


def read(path: Path) -> list[tuple[bytes, str]]:
    with PcapNgReader(str(path)) as r:
        return [(bytes(p), (p.comment or b"").decode()) for p in r]


def test_capture_all(router: Lab, tmp_path: Path) -> None:
    lab = router
    out = tmp_path / "all.pcapng"
    fwd, local, ttl1 = mixed(lab)
    proc = start(lab, "veth1", "--count", "10", "-w", str(out))
    try:
        received = send(lab, fwd + local + ttl1)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    got = read(out)
    assert len(got) == 10 and len(received) == 5
    # forwarded frames as they left (what h2 received), the others as sent
    assert sorted(got) == sorted(
        [(f, "verdict=redirect reason=forward") for f in received]
        + [(f, "verdict=pass reason=not_forwarded") for f in local]
        + [(f, "verdict=pass reason=ttl_expired") for f in ttl1]
    )
    text = subprocess.run(["tcpdump", "-r", str(out), "-nn", "-x"], capture_output=True, text=True, check=True)
    assert text.stdout.count("10.1.0.2.") == 10 and "reading from file" in text.stderr
    hexdump = subprocess.run(["tcpdump", "-r", str(out), "-nn", "-xx"], capture_output=True, text=True).stdout
    assert "0x0000:" in hexdump


def test_kernel_filters(router: Lab, tmp_path: Path) -> None:
    lab = router
    fwd, local, ttl1 = mixed(lab)
    out = tmp_path / "pass.pcapng"
    proc = start(lab, "veth1", "--verdict", "pass", "--count", "5", "-w", str(out))
    try:
        send(lab, fwd + local + ttl1)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert sorted(f for f, _ in read(out)) == sorted(local + ttl1)
    out = tmp_path / "ttl.pcapng"
    proc = start(lab, "veth1", "--reason", "ttl_expired", "--seconds", "2", "-w", str(out))
    try:
        send(lab, fwd + local + ttl1)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert read(out) == [(f, "verdict=pass reason=ttl_expired") for f in ttl1]
    # the capture ended: the filter is off again (the per-frame check fails)
    with netns(lab.router):
        maps = _router_maps(socket.if_nametoindex("veth1"), "veth1")
        try:
            raw = maps[MAP_CAPTURE].lookup(0)
        finally:
            for m in maps.values():
                m.close()
    assert raw == bytes(len(raw))


@pytest.mark.parametrize(
    "args, message",
    [
        (["veth1", "--reason", "nosuch", "-w", "/dev/null"], "xdprouter: error: unknown reason 'nosuch' (one of "),
        (["nosuch0", "-w", "/dev/null"], "xdprouter: error: unknown interface: nosuch0"),
    ],
)
def test_bad_input(router: Lab, args: list[str], message: str) -> None:
    p = router.xdprouter("capture", *args, check=False)
    assert p.returncode == 1 and p.stderr.startswith(message) and p.stderr.count("\n") == 1, p.stderr


def test_not_attached(lab: Lab, tmp_path: Path) -> None:
    p = lab.xdprouter("capture", "veth1", "-w", str(tmp_path / "x.pcapng"), check=False)
    assert (p.returncode, p.stderr) == (1, "xdprouter: error: xdprouter is not attached to veth1\n")
    assert not (tmp_path / "x.pcapng").exists()

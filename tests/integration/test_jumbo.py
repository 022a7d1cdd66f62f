"""Jumbo frames: at MTU 9000 and at the veth maximum a fresh lab attaches
natively (multi-buffer XDP), forwards frames that fill the MTU in XDP and
counts their whole length; a frame too big for the egress with DF set gets
the kernel's ICMP, without DF the kernel fragments it. On a kernel without
multi-buffer XDP (simulated: ``XDPR_SINGLE_BUFFER=1`` makes the load-time
probe answer no) native attach refuses with the MTU as the cause and auto
falls back to generic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xdprouter.lab import Lab

from .test_cli import assert_one_line_error, attached_progs
from .traffic import ping, received, stats

VETH_MAX_MTU = 65535
PING_HEADERS = {4: 28, 6: 48}  # IP + ICMP header bytes ping adds to -s


def set_mtu(lab: Lab, mtu: int, sides: tuple[int, ...] = (1, 2)) -> None:
    for side in sides:
        host = lab.h1 if side == 1 else lab.h2
        lab.ip(lab.router, "link", "set", f"veth{side}", "mtu", str(mtu))
        lab.ip(host.ns, "link", "set", host.iface, "mtu", str(mtu))


@pytest.fixture
def jumbo_lab(lab: Lab) -> Iterator[Lab]:
    try:
        yield lab
    finally:
        lab.xdprouter("detach", "--all", check=False)


def forward_counter(lab: Lab, iface: str) -> tuple[int, int]:
    entry = stats(lab).get(iface, {}).get("reasons", {}).get("forward")  # type: ignore[union-attr]
    return (int(entry["packets"]), int(entry["bytes"])) if entry else (0, 0)


@pytest.mark.parametrize("mtu", [9000, VETH_MAX_MTU])
def test_native_attach_forwards_frames_that_fill_the_mtu(jumbo_lab: Lab, mtu: int) -> None:
    lab = jumbo_lab
    set_mtu(lab, mtu)
    proc = lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
    assert proc.stderr == "", proc.stderr
    assert [m for m, _, _ in attached_progs(lab, "veth1")] == ["native"]
    for family, dst in ((4, lab.h2.ip4), (6, lab.h2.ip6)):
        ping(lab, lab.h1.ns, dst, count=1, check=True)  # neighbours resolved
        before = forward_counter(lab, "veth1")
        size = min(mtu, 65535) - PING_HEADERS[family]  # IPv4's total length is 16 bits
        rc, out = ping(lab, lab.h1.ns, dst, "-M", "do", "-s", str(size), count=3)
        assert received(out) == 3, out
        packets, nbytes = (a - b for a, b in zip(forward_counter(lab, "veth1"), before, strict=True))
        assert packets == 3, (family, out)
        assert nbytes == 3 * (14 + PING_HEADERS[family] + size)  # the whole frame, every buffer


def test_oversize_df_gets_the_kernels_icmp_and_no_df_is_fragmented(jumbo_lab: Lab) -> None:
    lab = jumbo_lab
    set_mtu(lab, 9000, sides=(1,))  # h2's side stays 1500
    lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)
    for dst, too_big in ((lab.h2.ip4, "Frag needed"), (lab.h2.ip6, "Packet too big")):
        ping(lab, lab.h1.ns, dst, count=1, check=True)
        _, out = ping(lab, lab.h1.ns, dst, "-M", "do", "-s", "8000", count=1)
        assert too_big in out and "mtu = 1500" in out.replace("mtu=", "mtu = "), out
    _, out = ping(lab, lab.h1.ns, lab.h2.ip4, "-M", "dont", "-s", "8000", count=2)
    assert received(out) == 2, out
    snap = stats(lab)["veth1"]["reasons"]
    # the two DF frames (h1 then learns the path MTU and fragments the rest itself)
    assert snap["frag_needed"]["packets"] >= 2  # type: ignore[index]


def test_kernel_without_multibuffer_xdp(jumbo_lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = jumbo_lab
    monkeypatch.setenv("XDPR_SINGLE_BUFFER", "1")
    set_mtu(lab, 9000)
    proc = lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces, check=False)
    line = assert_one_line_error(proc, "MTU 9000", "veth1", "no multi-buffer XDP", "--mode generic")
    assert "lower the MTU" in line
    assert attached_progs(lab, "veth1") == [] and attached_progs(lab, "veth2") == []
    proc = lab.xdprouter("attach", *lab.router_ifaces)
    assert proc.returncode == 0
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 2 and all("native mode refused" in w and "MTU 9000" in w for w in warnings), warnings
    assert [m for m, _, _ in attached_progs(lab, "veth1")] == ["generic"]
    ping(lab, lab.h1.ns, lab.h2.ip4, "-s", "8000", count=2, check=True)

"""The route hint: a run of frames with the same lookup input reuses one
bpf_fib_lookup() result for at most FIB_HINT_USES frames and FIB_HINT_NS.

The generator (traffic.Traffic, ``through=``) feeds the attached program
frames back to back in one BPF_PROG_RUN, writing each afresh, so the hint is
really used there (the per-CPU hint map says so); a route or neighbour change
made after that must reach the very next frame.
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Callable, Iterator

import pytest
from packets import H2_IP4, H2_IP6, ipv4, ipv6

from xdprouter import abi, bpf
from xdprouter.abi import Reason, Verdict
from xdprouter.lab import netns
from xdprouter.router import Router
from xdprouter.traffic import Traffic

from .conftest import ECMP_GW_MAC, DataPlane

NEW_H2_MAC = "02:00:00:00:02:77"


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def hints(dp: DataPlane) -> list[abi.FibHint]:
    """The per-CPU hints of the attached program."""
    with netns(dp.lab.router):
        info = Router().program_info()
        assert info is not None
        with bpf.opened_program(info.id) as prog:
            for map_id in prog.map_ids():
                m = bpf.Map.from_id(map_id)
                try:
                    if m.name == abi.MAP_FIB_HINT:
                        return m.lookup_per_cpu(ctypes.c_uint32(0), abi.FibHint)  # type: ignore[return-value]
                finally:
                    m.close()
    raise AssertionError("the program has no hint map")


def feed(dp: DataPlane, frame: bytes, n: int, **vary: int) -> dict[Verdict, int]:
    """Run the attached program on n frames back to back, as arrived on
    veth1 (``vary``: Traffic.send's flows, dsts, dst_shift); frames per verdict."""
    with netns(dp.lab.router):
        info = Router().program_info()
        assert info is not None
        veth1 = socket.if_nametoindex("veth1")
        before = Router().stats()["veth1"]
        with Traffic() as traffic, bpf.opened_program(info.id) as router:
            traffic.send_through(router, veth1, frame, n, **vary)
        after = Router().stats()["veth1"]
    return {v: after.packets(v) - before.packets(v) for v in Verdict}


def run_of(dp: DataPlane, frame: bytes, n: int) -> None:
    """n frames of one flow back to back: all forwarded, with the hint."""
    assert feed(dp, frame, n)[Verdict.FORWARDED] == n
    assert any(0 < h.uses < abi.FIB_HINT_USES for h in hints(dp)), "no hint used in a run of one flow"


# builder, `ip` family flag, a route via h2, a destination in it, another gateway on veth2
FAMILIES = [
    (ipv4, [], "192.0.2.0/24", "192.0.2.1", "10.2.0.3"),
    (ipv6, ["-6"], "2001:db8:300::/48", "2001:db8:300::1", "fd02::3"),
]
Family = tuple[Callable[..., bytes], list[str], str, str, str]


@pytest.fixture(params=FAMILIES, ids=("ipv4", "ipv6"))
def family(request: pytest.FixtureRequest) -> Family:
    return request.param  # type: ignore[no-any-return]


def test_route_change_reaches_the_next_frame(dp: DataPlane, family: Family) -> None:
    build, flag, prefix, dst, other_gw = family
    frame = build(dp.macs, dst=dst)
    run_of(dp, frame, 8)
    dp.ip(*flag, "route", "replace", prefix, "via", other_gw)
    try:
        out = dp.run(frame)
        assert out.reason == Reason.FORWARD and out.data[:6] == mac_bytes(ECMP_GW_MAC), "stale route used"
    finally:
        dp.ip(*flag, "route", "replace", prefix, "via", H2_IP6 if flag else H2_IP4)
    assert dp.run(frame).data[:6] == mac_bytes(dp.macs.h2)


def test_neighbour_change_reaches_the_next_frame(dp: DataPlane, family: Family) -> None:
    build, flag, *_ = family
    frame = build(dp.macs)
    h2 = H2_IP6 if flag else H2_IP4
    run_of(dp, frame, 8)
    dp.ip("neigh", "replace", h2, "lladdr", NEW_H2_MAC, "dev", "veth2", "nud", "permanent")
    try:
        assert dp.run(frame).data[:6] == mac_bytes(NEW_H2_MAC), "stale neighbour used"
        dp.ip("neigh", "del", h2, "dev", "veth2")
        result = dp.run(frame)
        assert (result.action, result.reason) == ("pass", Reason.NO_NEIGH), "deleted neighbour still used"
    finally:
        dp.ip("neigh", "replace", h2, "lladdr", dp.macs.h2, "dev", "veth2", "nud", "permanent")


def test_run_longer_than_the_hint_is_forwarded_alike(dp: DataPlane) -> None:
    """More frames than one hint may serve: every one forwarded and counted,
    and the next frame is forwarded with the bytes a lookup gives."""
    frame = ipv4(dp.macs)
    assert feed(dp, frame, 3 * abi.FIB_HINT_USES + 5)[Verdict.FORWARDED] == 3 * abi.FIB_HINT_USES + 5
    out = dp.run(frame)
    assert out.reason == Reason.FORWARD and out.data[:12] == mac_bytes(dp.macs.h2) + mac_bytes(dp.macs.r2)


@pytest.fixture
def blackhole_half(dp: DataPlane) -> Iterator[None]:
    dp.ip("route", "add", "blackhole", "192.0.2.128/25")
    try:
        yield
    finally:
        dp.ip("route", "del", "blackhole", "192.0.2.128/25")


@pytest.mark.parametrize("flows", [1, 3])
def test_interleaved_flows_are_each_looked_up(dp: DataPlane, blackhole_half: None, flows: int) -> None:
    """Frames back to back, alternating between a destination via h2 and
    one in a blackhole (and with ``flows`` source ports): a hint reused
    across different lookup inputs would forward the blackholed half."""
    n = 4 * abi.FIB_HINT_USES
    got = feed(dp, ipv4(dp.macs, dst="192.0.2.1"), n, flows=flows, dsts=2, dst_shift=7)  # .1, .129, ...
    assert (got[Verdict.FORWARDED], got[Verdict.DROPPED]) == (n // 2, n // 2)

"""The route hint: within one receive batch (a NAPI poll), a run of frames
with the same lookup input reuses one bpf_fib_lookup() result; the next batch
looks up afresh.

The injector (traffic.Injector) on h1 sends real frames in batches of a
chosen size: one UDP GSO send arrives in the injector's veth pair as one
poll of segments, each is rewritten as the next frame of the sequence and
redirected out of h1's eth0, and veth1 receives the whole batch in one NAPI
poll, where the attached program's redirects are carried out as usual. The
per-CPU hint map counts the frames that reused a result; the program's
counters say what each frame got. A route or neighbour change made between
batches must reach the very next frame.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from packets import H2_IP4, H2_IP6, ipv4, ipv6

from xdprouter import system
from xdprouter.dataplane.abi import Reason, Verdict
from xdprouter.lab import netns
from xdprouter.lab.feeds import Injector
from xdprouter.lab.traffic import Traffic, Vary
from xdprouter.router import Router

from .conftest import ECMP_GW_MAC, DataPlane

NEW_H2_MAC = "02:00:00:00:02:77"
BATCH = 64  # a veth NAPI poll's budget
ETH_P_ALL = 3


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def hinted(dp: DataPlane) -> list[bool]:
    """Is the route hint on for veth1, veth2 (`xdprouter status`)?"""
    with netns(dp.lab.router):
        return [row.route_hint for row in Router().status()]


def hint_uses(dp: DataPlane) -> int:
    """Frames that reused a lookup result so far, over all CPUs."""
    return dp.lookups().hint_uses


_injector: Injector | None = None


@pytest.fixture(scope="module", autouse=True)
def injector(dp: DataPlane) -> Iterator[Injector]:
    """The injector on h1, for the module's lab."""
    global _injector
    with Traffic() as traffic, Injector(traffic, dp.lab, dp.lab.h1) as _injector:
        try:
            yield _injector
        finally:
            _injector = None


def feed(dp: DataPlane, frame: bytes, n: int, batch: int = BATCH, vary: Vary | None = None) -> dict[Verdict, int]:
    """n frames of ``frame``'s sequence from h1 into veth1, in receive
    batches of ``batch``; frames per verdict the attached program gave."""
    assert _injector is not None
    before = dp.stats()["veth1"]
    _injector.send(frame, n, vary or Vary(), batch=batch)
    deadline = time.monotonic() + 5
    while True:
        after = dp.stats()["veth1"]
        got = {v: after.packets(v) - before.packets(v) for v in Verdict}
        if sum(got.values()) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


@contextlib.contextmanager
def arriving_at_h2(dp: DataPlane, frame: bytes, n: int) -> Iterator[list[bytes]]:
    """The destination MACs of the n frames like ``frame`` (same addresses and
    UDP ports) that reach h2's interface while the block runs: an AF_PACKET
    socket sees them before h2 drops the ones not addressed to it."""
    macs: list[bytes] = []
    with netns(dp.lab.h2.ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((dp.lab.h2.iface, ETH_P_ALL))
        sock.settimeout(2.0)
        yield macs
        # addresses and UDP ports, behind a 20-byte IPv4 or 40-byte IPv6 header
        ident = slice(26, 38) if frame[12:14] == b"\x08\x00" else slice(22, 58)
        while len(macs) < n:
            try:
                data = sock.recv(2048)
            except TimeoutError:
                break
            if data[12:14] == frame[12:14] and data[ident] == frame[ident]:
                macs.append(data[:6])
    finally:
        sock.close()


def run_of(dp: DataPlane, frame: bytes, n: int) -> None:
    """n frames of one flow in one batch: all forwarded, the hint used."""
    uses = hint_uses(dp)
    assert feed(dp, frame, n)[Verdict.FORWARDED] == n
    assert hint_uses(dp) > uses, "no hint used in a run of one flow"


def test_a_run_in_one_batch_reuses_one_lookup(dp: DataPlane) -> None:
    """The first frame is looked up, the second stores the result, the rest reuse it."""
    feed(dp, ipv4(dp.macs, dst="192.0.2.9"), 1)  # another flow's key in the hint
    uses = hint_uses(dp)
    assert feed(dp, ipv4(dp.macs), BATCH)[Verdict.FORWARDED] == BATCH
    assert hint_uses(dp) - uses == BATCH - 2


def test_a_hint_never_outlives_its_batch(dp: DataPlane) -> None:
    """Batches of one frame: every frame is looked up, none reuses a result."""
    uses = hint_uses(dp)
    assert feed(dp, ipv4(dp.macs), 16, batch=1)[Verdict.FORWARDED] == 16
    assert hint_uses(dp) == uses


# builder, `ip` family flag, a route via h2, a destination in it, another gateway on veth2
FAMILIES = [
    (ipv4, [], "192.0.2.0/24", "192.0.2.1", "10.2.0.3"),
    (ipv6, ["-6"], "2001:db8:300::/48", "2001:db8:300::1", "fd02::3"),
]
Family = tuple[Callable[..., bytes], list[str], str, str, str]


@pytest.fixture(params=FAMILIES, ids=("ipv4", "ipv6"))
def family(request: pytest.FixtureRequest) -> Family:
    return request.param  # type: ignore[no-any-return]


def test_generic_mode_never_uses_the_hint(dp: DataPlane) -> None:
    """In generic mode another program's redirects can share the poll, so the
    control plane leaves the hint off there; native mode turns it on."""
    assert hinted(dp) == [True, True]
    dp.lab.xdprouter("attach", "--mode", "generic", *dp.lab.router_ifaces)
    try:
        assert hinted(dp) == [False, False]
        uses = hint_uses(dp)
        assert feed(dp, ipv4(dp.macs), BATCH)[Verdict.FORWARDED] == BATCH
        assert hint_uses(dp) == uses
    finally:
        dp.attach()
    assert hinted(dp) == [True, True]


def test_preempt_rt_never_uses_the_hint(dp: DataPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PREEMPT_RT two NAPI threads on one CPU could interleave in the
    per-CPU hint: the control plane leaves it off there, native mode or not."""
    monkeypatch.setattr(system, "preempt_rt", lambda: True)
    try:
        with netns(dp.lab.router):
            Router().attach(list(dp.lab.router_ifaces), mode="native")
        assert hinted(dp) == [False, False]
    finally:
        dp.attach()
    assert hinted(dp) == [True, True]


def test_route_change_reaches_the_next_batch(dp: DataPlane, family: Family) -> None:
    build, flag, prefix, dst, other_gw = family
    frame = build(dp.macs, dst=dst)
    gw = H2_IP6 if flag else H2_IP4
    run_of(dp, frame, 8)
    dp.ip(*flag, "route", "replace", "blackhole", prefix)
    try:
        assert feed(dp, frame, 8)[Verdict.DROPPED] == 8, "stale route used"
    finally:
        dp.ip(*flag, "route", "replace", prefix, "via", gw)
    # a change between batches to a route that still forwards: every frame
    # of the next batch (the ones after its first lookup too) takes it
    run_of(dp, frame, 8)
    dp.ip(*flag, "route", "replace", prefix, "via", other_gw)
    try:
        with arriving_at_h2(dp, frame, 8) as macs:
            run_of(dp, frame, 8)
        assert macs == [mac_bytes(ECMP_GW_MAC)] * 8, "stale route used"
    finally:
        dp.ip(*flag, "route", "replace", prefix, "via", gw)
    with arriving_at_h2(dp, frame, 8) as macs:
        run_of(dp, frame, 8)
    assert macs == [mac_bytes(dp.macs.h2)] * 8


def test_neighbour_change_reaches_the_next_batch(dp: DataPlane, family: Family) -> None:
    build, flag, *_ = family
    frame = build(dp.macs)
    h2 = H2_IP6 if flag else H2_IP4
    run_of(dp, frame, 8)
    dp.ip("neigh", "replace", h2, "lladdr", NEW_H2_MAC, "dev", "veth2", "nud", "permanent")
    try:
        with arriving_at_h2(dp, frame, 8) as macs:
            run_of(dp, frame, 8)
        assert macs == [mac_bytes(NEW_H2_MAC)] * 8, "stale neighbour used"
        dp.ip("neigh", "del", h2, "dev", "veth2")
        # passed to the kernel, which resolves h2 again
        assert feed(dp, frame, 1)[Verdict.PASSED] == 1, "deleted neighbour still used"
    finally:
        dp.ip("neigh", "replace", h2, "lladdr", dp.macs.h2, "dev", "veth2", "nud", "permanent")


def test_run_over_many_batches_is_forwarded_alike(dp: DataPlane) -> None:
    """A run over several batches: every frame forwarded and counted, and
    the next frame is forwarded with the bytes a lookup gives."""
    frame = ipv4(dp.macs)
    assert feed(dp, frame, 3 * BATCH + 5)[Verdict.FORWARDED] == 3 * BATCH + 5
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
    n = 4 * BATCH
    got = feed(dp, ipv4(dp.macs, dst="192.0.2.1"), n, vary=Vary(flows=flows, dsts=2, dst_shift=7))  # .1, .129, ...
    assert (got[Verdict.FORWARDED], got[Verdict.DROPPED]) == (n // 2, n // 2)

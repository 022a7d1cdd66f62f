"""IPv6 lookups in the main table alone (bpf/include/fib6_local.h).

Without policy rules Linux looks an IPv6 destination up in the local table,
then in the main table. The program skips the local table for a destination
that is none of its routes, known from the control plane's copy while the
table's serial number is unchanged. Every test checks what Linux does with
the frame (local delivery is the kernel's: the frame must be passed) and
whether the lookup went to the main table alone (the per-CPU counter).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from packets import ipv4, ipv6

from xdprouter import local6
from xdprouter.dataplane import abi, bpf
from xdprouter.dataplane.abi import Reason
from xdprouter.errors import BpfError
from xdprouter.lab import netns
from xdprouter.local6 import local6_table
from xdprouter.router import Router

from .conftest import DataPlane

ROUTED = "2001:db8:300::1"  # in 2001:db8:300::/48 via h2


def main_only(dp: DataPlane) -> int:
    return dp.lookups().ipv6_main_only


def in_use(dp: DataPlane) -> bool:
    with netns(dp.lab.router):
        return Router().ipv6_main_only()


def verdict(dp: DataPlane, dst: str) -> tuple[str, Reason | None, int]:
    """What the program does with an IPv6 frame to ``dst``, and how many of
    its lookups (0 or 1) went to the main table alone."""
    before = main_only(dp)
    result = dp.run(ipv6(dp.macs, dst=dst))
    return result.action, result.reason, main_only(dp) - before


def test_in_use_after_attach(dp: DataPlane) -> None:
    """The lab's local table holds only addresses and multicast: copied whole."""
    assert in_use(dp)
    assert verdict(dp, ROUTED) == ("redirect", Reason.FORWARD, 1)


def test_ipv4_is_not_affected(dp: DataPlane) -> None:
    before = main_only(dp)
    assert dp.run(ipv4(dp.macs)).reason == Reason.FORWARD
    assert main_only(dp) == before


@pytest.mark.parametrize(
    "dst", ["fd02::1", "fd01::1", "fd03::1", "fd02::"], ids=["egress", "ingress", "other", "anycast"]
)
def test_local_destinations_get_the_full_lookup(dp: DataPlane, dst: str) -> None:
    """Our own and anycast addresses are in the copy: the kernel delivers them."""
    assert in_use(dp)
    assert verdict(dp, dst) == ("pass", Reason.NOT_FORWARDED, 0)


@pytest.fixture
def loopback_address(dp: DataPlane) -> Iterator[str]:
    """An address of ours inside a prefix routed via h2: only the local
    table says it is ours (a lookup in main would forward it)."""
    dp.ip("-6", "addr", "add", "2001:db8:300::5/128", "dev", "lo")
    try:
        yield "2001:db8:300::5"
    finally:
        dp.ip("-6", "addr", "del", "2001:db8:300::5/128", "dev", "lo")
        dp.attach()


def test_address_added_after_attach_is_delivered(dp: DataPlane, loopback_address: str) -> None:
    """The copy is stale the moment the local table changes; until the next
    attach every IPv6 lookup is a full one."""
    assert verdict(dp, loopback_address) == ("pass", Reason.NOT_FORWARDED, 0)
    assert verdict(dp, ROUTED) == ("redirect", Reason.FORWARD, 0)
    assert not in_use(dp)


def test_address_known_at_attach_is_delivered(dp: DataPlane, loopback_address: str) -> None:
    dp.attach()
    assert in_use(dp)
    assert verdict(dp, loopback_address) == ("pass", Reason.NOT_FORWARDED, 0)
    assert verdict(dp, ROUTED) == ("redirect", Reason.FORWARD, 1)


@contextlib.contextmanager
def in_local_table(dp: DataPlane, kind: str, dst: str, dev: str, *, attach: bool) -> Iterator[None]:
    """A route of ``kind`` in table local for the block (``attach``: then
    attach, so the copy holds it); attached afresh when it is gone."""
    route = [kind, dst, "dev", dev, "table", "local"]
    dp.ip("-6", "route", "add", *route)
    try:
        if attach:
            dp.attach()
        yield
    finally:
        dp.ip("-6", "route", "del", *route)
        dp.attach()


@pytest.fixture
def anycast_route(dp: DataPlane) -> Iterator[str]:
    with in_local_table(dp, "anycast", "2001:db8:300::6", "veth2", attach=False):
        yield "2001:db8:300::6"


def test_local_table_route_added_after_attach(dp: DataPlane, anycast_route: str) -> None:
    assert verdict(dp, anycast_route) == ("pass", Reason.NOT_FORWARDED, 0)
    dp.attach()
    assert verdict(dp, anycast_route) == ("pass", Reason.NOT_FORWARDED, 0)
    assert verdict(dp, ROUTED) == ("redirect", Reason.FORWARD, 1)


def test_main_table_changes_keep_the_copy(dp: DataPlane) -> None:
    """Routes come and go in the main table all day (BGP): the copy stays good."""
    dp.ip("-6", "route", "add", "blackhole", "2001:db8:300:7::/64")
    try:
        assert verdict(dp, "2001:db8:300:7::1") == ("drop", Reason.BLACKHOLE, 1)
    finally:
        dp.ip("-6", "route", "del", "blackhole", "2001:db8:300:7::/64")
    assert verdict(dp, "2001:db8:300:7::1") == ("redirect", Reason.FORWARD, 1)


def same_home_slot(n: int) -> list[str]:
    """n addresses in 2001:db8:300::/64 (routed via h2) with one home slot."""
    by_slot: dict[int, list[str]] = {}
    for i in range(1, 1 << 16):
        addr = f"2001:db8:300::{i:x}"
        group = by_slot.setdefault(abi.local6_slot(ipaddress.IPv6Address(addr).packed), [])
        group.append(addr)
        if len(group) == n:
            return group
    raise AssertionError("no slot shared")


@pytest.fixture
def colliding(dp: DataPlane) -> Iterator[list[str]]:
    """Two addresses of ours that share a home slot (the second lies past
    it in the copy), known at attach, and a third, not ours, with the same
    home slot: the program must search the copy as local6.py fills it."""
    ours, ours_too, other = same_home_slot(3)
    for addr in (ours, ours_too):
        dp.ip("-6", "addr", "add", f"{addr}/128", "dev", "lo")
    dp.attach()
    try:
        yield [ours, ours_too, other]
    finally:
        for addr in (ours, ours_too):
            dp.ip("-6", "addr", "del", f"{addr}/128", "dev", "lo")
        dp.attach()


def test_colliding_addresses(dp: DataPlane, colliding: list[str]) -> None:
    ours, ours_too, other = colliding
    assert in_use(dp)
    assert verdict(dp, ours) == ("pass", Reason.NOT_FORWARDED, 0)
    assert verdict(dp, ours_too) == ("pass", Reason.NOT_FORWARDED, 0)
    assert verdict(dp, other) == ("redirect", Reason.FORWARD, 1)


@pytest.fixture
def dummy_link(dp: DataPlane) -> Iterator[str]:
    dp.ip("link", "add", "xdprd0", "type", "veth", "peer", "name", "xdprd1")
    for link in ("xdprd0", "xdprd1"):
        dp.ip("link", "set", link, "up")
    dp.attach()
    try:
        yield "xdprd0"
    finally:
        dp.ip("link", "del", "xdprd0")
        dp.attach()


def test_link_flap_means_full_lookups_until_attach(dp: DataPlane, dummy_link: str) -> None:
    """An interface coming up renews the routes on it, local ones included
    (fib6_ifup()): the copy may be stale, so it is not used until attach."""
    assert in_use(dp)
    dp.ip("link", "set", dummy_link, "down")
    dp.ip("link", "set", dummy_link, "up")
    assert verdict(dp, ROUTED) == ("redirect", Reason.FORWARD, 0)
    assert not in_use(dp)
    dp.attach()
    assert verdict(dp, ROUTED) == ("redirect", Reason.FORWARD, 1)


@pytest.fixture
def local_prefix(dp: DataPlane) -> Iterator[str]:
    """A whole prefix delivered locally (AnyIP): cannot be copied as addresses."""
    with in_local_table(dp, "local", "2001:db8:300:8::/64", "lo", attach=True):
        yield "2001:db8:300:8::9"


def test_local_prefix_means_full_lookups(dp: DataPlane, local_prefix: str) -> None:
    assert not in_use(dp)
    assert verdict(dp, local_prefix) == ("pass", Reason.NOT_FORWARDED, 0)
    assert verdict(dp, ROUTED) == ("redirect", Reason.FORWARD, 0)


def test_policy_rule_added_after_attach(dp: DataPlane) -> None:
    """Rules choose the tables: the lookup is the kernel's whole one. Last in
    this module: the namespace keeps fib6_has_custom_rules once set."""
    assert in_use(dp)
    dp.ip("-6", "route", "add", "blackhole", "2001:db8:300::8", "table", "100")
    dp.ip("-6", "rule", "add", "to", "2001:db8:300::8", "table", "100", "prio", "100")
    try:
        assert verdict(dp, "2001:db8:300::8") == ("drop", Reason.BLACKHOLE, 0)
        assert verdict(dp, ROUTED) == ("redirect", Reason.FORWARD, 0)
        dp.attach()
        assert not in_use(dp)
    finally:
        dp.ip("-6", "rule", "del", "prio", "100")
        dp.ip("-6", "route", "del", "blackhole", "2001:db8:300::8", "table", "100")


def net(text: str) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(text)


def test_copy_leaves_out_what_is_never_looked_up() -> None:
    table = local6_table([net("ff00::/8"), net("fe80::/64"), net("fe80::1/128"), net("::/128"), net("fd02::1/128")])
    assert table is not None
    assert [a for a in table if any(a)] == [ipaddress.IPv6Address("fd02::1").packed]


@pytest.mark.parametrize("prefix", ["fd02::/64", "::/0", "2001:db8::/127"])
def test_copy_refuses_prefixes(prefix: str) -> None:
    assert local6_table([net("fd02::1/128"), net(prefix)]) is None


def test_copy_refuses_what_does_not_fit() -> None:
    """Addresses that share a home slot fill at most LOCAL6_PROBES slots."""
    same_home = [
        a for a in (net(f"fd00::{i:x}/128") for i in range(1 << 16)) if abi.local6_slot(a.network_address.packed) == 0
    ]
    assert local6_table(same_home[: abi.LOCAL6_PROBES]) is not None
    assert local6_table(same_home[: abi.LOCAL6_PROBES + 1]) is None


class _FakeMap:
    """A one-CPU array map in a dict, enough for local6.sync()."""

    def __init__(self, values: dict[int, bytes]) -> None:
        self.values = values

    def lookup_as(self, key: int, value_type: Any) -> Any:
        raw = self.values.get(key)
        return value_type.from_buffer_copy(raw) if raw is not None else None

    def update(self, key: int, value: Any) -> None:
        self.values[key] = bytes(value)

    def write_changed(self, values: list[bytes]) -> None:
        self.values.update(enumerate(values))


class _FailingProbeObject:
    """bpf.Object of a probe whose run does not return XDP_PASS and writes nothing."""

    def __init__(self, path: str) -> None:
        pass

    def __enter__(self) -> _FailingProbeObject:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def program(self, name: str) -> Any:
        return SimpleNamespace(test_run=lambda frame: bpf.TestRun(retval=abi.XdpAction.DROP, data=b"", duration_ns=0))

    def map(self, name: str) -> Any:
        return _FakeMap({})


def test_a_failing_probe_leaves_every_lookup_full(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The probe's failure is a BpfError with an errno, which sync() catches:
    the copy stays marked incomplete (a TypeError used to escape instead)."""
    (tmp_path / local6.PROBE_OBJECT).touch()
    router_object = tmp_path / "xdp_router.bpf.o"
    monkeypatch.setattr(local6.bpf, "Object", _FailingProbeObject)
    with pytest.raises(BpfError) as failed:
        local6.probe(router_object)
    assert failed.value.errno == errno.EIO
    copy, state = _FakeMap({}), _FakeMap({0: bytes(abi.Local6State(sernum=7, complete=1, gen=4))})
    assert local6.sync(copy, state, router_object) is False  # type: ignore[arg-type]
    assert state.values == {0: bytes(abi.Local6State(gen=5))}  # incomplete: full lookups
    assert copy.values == {}
    assert local6.in_use(state, router_object) is False  # type: ignore[arg-type]

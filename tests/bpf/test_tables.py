"""The data plane's lookup tables at their edges: the open-addressing table
of local addresses when addresses share a home slot, and interfaces whose
ifindex is beyond the array (the hash fallback)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from packets import ipv4

from xdprouter import abi
from xdprouter.abi import Reason as R
from xdprouter.router import local4_table

from .conftest import DataPlane


def _colliding(count: int, base: str = "10.77.0.1") -> list[ipaddress.IPv4Address]:
    """``count`` addresses with the same home slot as the first."""
    first = ipaddress.IPv4Address(base)
    home = abi.local4_slot(int(first))
    out, candidate = [first], int(first)
    while len(out) < count:
        candidate += 1
        if abi.local4_slot(candidate) == home:
            out.append(ipaddress.IPv4Address(candidate))
    return out


def test_table_places_colliding_addresses_in_probe_order() -> None:
    addrs = _colliding(3)
    table = local4_table(addrs)
    home = abi.local4_slot(int(addrs[0]))
    assert [table[(home + i) % abi.LOCAL4_SLOTS] for i in range(3)] == [a.packed for a in sorted(addrs)]
    assert sum(1 for slot in table if slot != bytes(4)) == 3


def test_table_refuses_more_collisions_than_probes() -> None:
    with pytest.raises(Exception, match="too many IPv4 addresses"):
        local4_table(_colliding(abi.LOCAL4_PROBES + 1))


@pytest.fixture
def colliding_addresses(dp: DataPlane) -> Iterator[list[ipaddress.IPv4Address]]:
    addrs = _colliding(4)
    for a in addrs:
        dp.ip("addr", "add", f"{a}/32", "dev", "veth3")
    dp.attach()
    try:
        yield addrs
    finally:
        for a in addrs:
            dp.ip("addr", "del", f"{a}/32", "dev", "veth3")
        dp.attach()


def test_every_colliding_local_address_is_a_martian_source(
    dp: DataPlane, colliding_addresses: list[ipaddress.IPv4Address]
) -> None:
    for addr in colliding_addresses:
        frame = ipv4(dp.macs, src=str(addr))
        result = dp.run(frame)
        assert (result.action, result.reason) == ("pass", R.MARTIAN_SRC), addr


def test_a_source_sharing_a_home_slot_with_local_addresses_is_forwarded(
    dp: DataPlane, colliding_addresses: list[ipaddress.IPv4Address]
) -> None:
    stranger = _colliding(len(colliding_addresses) + 1)[-1]
    result = dp.run(ipv4(dp.macs, src=str(stranger)))
    assert (result.action, result.reason) == ("redirect", R.FORWARD)


@pytest.fixture
def high_ifindex(dp: DataPlane) -> Iterator[str]:
    """A router interface whose ifindex is past the array (the hash fallback)."""
    index = str(abi.IFACE_ARRAY_SIZE + 7)
    dp.ip("link", "add", "vhigh", "index", index, "type", "veth", "peer", "name", "vhighp")
    dp.ip("link", "set", "vhigh", "up")
    dp.ip("link", "set", "vhighp", "up")
    dp.lab.xdprouter("attach", "--mode", "native", "vhigh")
    try:
        yield index
    finally:
        dp.lab.xdprouter("detach", "vhigh", check=False)
        dp.ip("link", "del", "vhigh")


def test_interface_beyond_the_array_is_configured_and_forwards(dp: DataPlane, high_ifindex: str) -> None:
    status = dp.lab.xdprouter("status", "--json").stdout
    assert f'"ifindex": {high_ifindex}' in status
    result = dp.run(ipv4(dp.macs, mac_dst=dp.lab.mac(dp.lab.router, "vhigh")), "vhigh")
    assert (result.action, result.reason) == ("redirect", R.FORWARD)
    assert dp.stats()["vhigh"].packets(abi.Verdict.FORWARDED) == 1


def test_detached_interface_beyond_the_array_is_unconfigured(dp: DataPlane, high_ifindex: str) -> None:
    dp.lab.xdprouter("detach", "vhigh")
    assert "vhigh" not in dp.stats()

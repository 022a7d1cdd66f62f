"""The data plane's lookup tables and device kinds at their edges: the
open-addressing table of local addresses when addresses share a home slot,
interfaces whose ifindex is beyond the array (the hash fallback), and
same-interface forwarding on a device that is not a veth (XDP_TX)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from packets import ipv4

from xdprouter.dataplane import abi
from xdprouter.dataplane.abi import Reason as R
from xdprouter.snapshot import local4_table

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


TAP_GW, TAP_GW_MAC = "10.8.0.2", "02:00:00:00:08:02"


@pytest.fixture
def tap(dp: DataPlane) -> Iterator[str]:
    """A tap device in the router (native XDP, not a veth), a neighbour on it,
    a route back out of it, send_redirects off so Linux would not redirect."""
    keys = ("net.ipv4.conf.all.send_redirects", "net.ipv4.conf.default.send_redirects")
    old = {key: dp.sysctl(key, "0") for key in keys}
    dp.ip("tuntap", "add", "dev", "tap0", "mode", "tap")
    dp.ip("link", "set", "tap0", "up")
    dp.ip("addr", "add", "10.8.0.1/24", "dev", "tap0")
    dp.ip("neigh", "replace", TAP_GW, "lladdr", TAP_GW_MAC, "dev", "tap0", "nud", "permanent")
    dp.ip("route", "add", "10.9.0.0/24", "via", TAP_GW, "dev", "tap0")
    dp.lab.xdprouter("attach", "--mode", "native", "tap0")
    try:
        yield "tap0"
    finally:
        dp.lab.xdprouter("detach", "tap0", check=False)
        dp.ip("link", "del", "tap0")
        for key, value in old.items():
            dp.sysctl(key, value)


def test_same_interface_on_a_tap_goes_back_with_xdp_tx(dp: DataPlane, tap: str) -> None:
    tap_mac = dp.lab.mac(dp.lab.router, tap)
    frame = ipv4(dp.macs, mac_dst=tap_mac, src="10.8.0.7", dst="10.9.0.5")
    result = dp.run(frame, tap)
    assert (result.action, result.reason) == ("tx", R.TX_SAME_IFACE)
    assert result.data[0:6] == bytes.fromhex(TAP_GW_MAC.replace(":", ""))
    assert result.data[6:12] == bytes.fromhex(tap_mac.replace(":", ""))

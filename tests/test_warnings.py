"""attach says plainly what the fast path bypasses: netfilter rules on the
forwarding hooks, and route MTUs its FIB lookup cannot see."""

from __future__ import annotations

import shutil

import pytest

from xdprouter.lab import Lab


def _forward_chain(lab: Lab, policy: str) -> None:
    lab.run(lab.router, "nft", "add", "table", "inet", "filt")
    chain = f"{{ type filter hook forward priority 0 ; policy {policy} ; }}"
    lab.run(lab.router, "nft", "add", "chain", "inet", "filt", "xfwd", chain)


def test_no_warning_on_a_plain_router(lab: Lab) -> None:
    out = lab.xdprouter("attach", *lab.router_ifaces)
    assert "warning" not in out.stderr


def test_rp_filter_needs_no_warning(lab: Lab) -> None:
    """rp_filter is enforced by the fast path itself (tests/bpf: test_rp_filter_is_enforced)."""
    lab.sysctl(lab.router, "net.ipv4.conf.veth1.rp_filter", "1")
    out = lab.xdprouter("attach", *lab.router_ifaces)
    assert out.returncode == 0 and "warning" not in out.stderr


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed")
def test_netfilter_forward_rules_are_named(lab: Lab) -> None:
    _forward_chain(lab, "accept")
    lab.run(lab.router, "nft", "add", "rule", "inet", "filt", "xfwd", "ip", "saddr", "10.9.9.9", "drop")
    out = lab.xdprouter("attach", *lab.router_ifaces)
    assert out.returncode == 0
    assert "netfilter" in out.stderr and "inet filt xfwd" in out.stderr


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed")
def test_empty_accepting_chains_are_not_reported(lab: Lab) -> None:
    _forward_chain(lab, "accept")
    out = lab.xdprouter("attach", *lab.router_ifaces)
    assert "netfilter" not in out.stderr


def test_unlocked_route_mtu_is_named_and_locked_is_not(lab: Lab) -> None:
    lab.ip(lab.router, "route", "add", "198.18.0.0/24", "via", lab.h2.ip4, "mtu", "1300")
    lab.ip(lab.router, "route", "add", "198.19.0.0/24", "via", lab.h2.ip4, "mtu", "lock", "1300")
    out = lab.xdprouter("attach", *lab.router_ifaces)
    warning = [line for line in out.stderr.splitlines() if "mtu" in line]
    assert len(warning) == 1
    assert "198.18.0.0/24 mtu 1300" in warning[0] and "198.19.0.0" not in warning[0]
    assert "mtu lock" in warning[0]

"""A firewall rule to and from its data-plane form (FwRule), without I/O."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..dataplane import abi_fw as fw
from .rules import ACTIONS, Rule, prefix_parts


def encode(r: Rule, policy: bool, ifindex: int, set_slots: dict[str, int]) -> fw.FwRule:
    """The rule as the data plane holds it (the whole rule, so it reads back)."""
    e = fw.FwRule(id=r.id, action=ACTIONS[r.action], family=r.family)
    e.flags = fw.FwRuleFlag.POLICY if policy else 0
    if r.proto is not None:
        e.flags |= fw.FwRuleFlag.PROTO
        e.proto = r.proto
    for attr, flag in (("src", fw.FwRuleFlag.SRC_SET), ("dst", fw.FwRuleFlag.DST_SET)):
        value = getattr(r, attr)
        if value and value.startswith("@"):
            e.flags |= flag
            setattr(e, f"{attr}_set", set_slots[value[1:]])
            setattr(e, f"{attr}_len", 0xFF)
        elif value:
            fam, addr, plen = prefix_parts(value)
            packed = addr.to_bytes(4 if fam == 4 else 16, "big")
            getattr(e, attr)[: len(packed)] = list(packed)
            setattr(e, f"{attr}_len", plen)
        else:
            setattr(e, f"{attr}_len", 0xFF)
    e.sport_lo, e.sport_hi = r.sport or (0, 65535)
    e.dport_lo, e.dport_hi = r.dport or (0, 65535)
    # a range, even 0-65535, matches only protocols with ports: say so
    e.flags |= (fw.FwRuleFlag.SPORT if r.sport else 0) | (fw.FwRuleFlag.DPORT if r.dport else 0)
    if r.icmp_type is not None:
        e.flags |= fw.FwRuleFlag.ICMP_TYPE
        e.sport_lo = e.sport_hi = r.icmp_type
    e.ifindex = ifindex
    if r.action == "limit":
        e.pps, e.bps = r.pps, r.bps
        e.burst_pkts = r.burst or r.pps
        e.burst_bytes = r.burst_bytes or r.bps
        if r.pps:
            e.pkt_ns = 10**9 // r.pps
            e.pkt_tau = e.burst_pkts * e.pkt_ns
        if r.bps:
            e.byte_tau = e.burst_bytes * 10**9 // r.bps
        e.block_after = r.block_after
        e.block_ns = int(r.block_seconds * 1e9)
    return e


def decode(r: fw.FwRule, names: dict[int, str], slots: dict[int, str]) -> Rule:
    def addr(flag: fw.FwRuleFlag, raw: Any, plen: int, slot: int) -> str | None:
        if r.flags & flag:
            return f"@{slots.get(slot, f'slot{slot}')}"
        return _net(r.family, raw, plen)

    src = addr(fw.FwRuleFlag.SRC_SET, r.src, r.src_len, r.src_set)
    dst = addr(fw.FwRuleFlag.DST_SET, r.dst, r.dst_len, r.dst_set)
    sport = (r.sport_lo, r.sport_hi) if r.flags & fw.FwRuleFlag.SPORT else None
    dport = (r.dport_lo, r.dport_hi) if r.flags & fw.FwRuleFlag.DPORT else None
    icmp_type = r.sport_lo if r.flags & fw.FwRuleFlag.ICMP_TYPE else None
    return Rule(
        action={v: k for k, v in ACTIONS.items()}[fw.FwAction(r.action)],
        src=src,
        dst=dst,
        proto=r.proto if r.flags & fw.FwRuleFlag.PROTO else None,
        sport=sport,
        dport=dport,
        icmp_type=icmp_type,
        iface=names.get(r.ifindex, f"ifindex:{r.ifindex}") if r.ifindex else None,
        pps=r.pps,
        bps=r.bps,
        burst=r.burst_pkts,
        burst_bytes=r.burst_bytes,
        block_after=r.block_after,
        block_seconds=r.block_ns / 1e9,
        id=r.id,
    )


def _net(family: int, raw: Any, plen: int) -> str | None:
    if plen == 0xFF:  # no prefix of this direction
        return None
    n = 4 if family == 4 else 16
    return str(ipaddress.ip_network((bytes(raw[:n]), plen)))

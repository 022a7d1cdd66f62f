"""Prometheus metrics, read from the maps at scrape time (prometheus_client).

Nothing is cached: each scrape reads the per-CPU counters the fast path
writes (``Router.stats()``, ``Firewall.counters()``), so ``/metrics`` and
``xdprouter stats --json`` read the same numbers. The list, with what to
graph, is in docs/daemon.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .dataplane import abi
from .errors import XdpRouterError
from .firewall import Firewall
from .router import Router

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("xdprouter.metrics")


class RouterCollector(Collector):
    """The fast path's counters and state; the daemon's when one is given."""

    def __init__(self, router: Router, daemon: Daemon | None = None) -> None:
        self.router = router
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        if self.daemon is not None:
            with self.daemon.lock:
                metrics = list(self._router_metrics()) + list(self._daemon_metrics(self.daemon))
        else:
            metrics = list(self._router_metrics())
        yield from metrics

    def _router_metrics(self) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            "xdprouter_packets",
            "Frames by ingress interface, verdict and reason",
            labels=["interface", "verdict", "reason"],
        )
        octets = CounterMetricFamily(
            "xdprouter_bytes",
            "Bytes by ingress interface, verdict and reason",
            labels=["interface", "verdict", "reason"],
        )
        for name, counters in self.router.stats().items():
            for reason, c in counters.reasons.items():
                verdict = abi.Reason[reason.upper()].verdict.name.lower()
                packets.add_metric([name, verdict, reason], c.packets)
                octets.add_metric([name, verdict, reason], c.bytes)
        yield packets
        yield octets

        attached = GaugeMetricFamily(
            "xdprouter_interface_attached",
            "1 for each interface the fast path is attached to",
            labels=["interface", "mode"],
        )
        hint = GaugeMetricFamily(
            "xdprouter_interface_route_hint", "Route hint in use (native mode)", labels=["interface"]
        )
        status = self.router.status()
        for s in status:
            attached.add_metric([s.name, s.mode], 1)
            hint.add_metric([s.name], int(s.route_hint))
        yield attached
        yield hint
        if not status:
            return
        yield GaugeMetricFamily(
            "xdprouter_ipv6_main_table_only",
            "1 while IPv6 lookups skip the local table (its copy is complete and current)",
            value=int(self.router.ipv6_main_only()),
        )
        lookups = self.router.lookup_counters()
        yield CounterMetricFamily(
            "xdprouter_route_hint_uses", "Frames that reused the route hint instead of a FIB lookup", lookups.hint_uses
        )
        yield CounterMetricFamily(
            "xdprouter_ipv6_main_table_lookups", "IPv6 FIB lookups made in the main table alone", lookups.ipv6_main_only
        )
        yield from self._firewall_metrics()
        yield from self._steer_metrics()

    def _firewall_metrics(self) -> Iterator[Metric]:
        fw = Firewall()
        try:
            rows = fw.counters()
            blocked = fw.blocked()
        except XdpRouterError:
            return
        labels = ["rule_id", "position", "action", "rule"]
        packets = CounterMetricFamily(
            "xdprouter_firewall_rule_packets", "Frames matched by a firewall rule", labels=labels
        )
        octets = CounterMetricFamily("xdprouter_firewall_rule_bytes", "Bytes matched by a firewall rule", labels=labels)
        for r in rows:
            values = [str(r.rule.id), str(r.position), r.rule.action, r.rule.describe()]
            packets.add_metric(values, r.packets)
            octets.add_metric(values, r.bytes)
        yield packets
        yield octets
        per_rule: dict[str, int] = {}
        for b in blocked:
            per_rule[str(b["rule"])] = per_rule.get(str(b["rule"]), 0) + 1
        sources = GaugeMetricFamily(
            "xdprouter_firewall_blocked_sources",
            "Sources blocked now, by the limit rule that blocked them",
            labels=["rule_id"],
        )
        for rule_id, n in sorted(per_rule.items()):
            sources.add_metric([rule_id], n)
        yield sources

    def _steer_metrics(self) -> Iterator[Metric]:
        from .steer import Steering

        try:
            rows = Steering().counters()
        except XdpRouterError:
            return
        labels = ["rule_id", "position", "action", "rule"]
        families = {
            (what, unit): CounterMetricFamily(f"xdprouter_steer_rule_{what}_{unit}", help_, labels=labels)
            for what, unit, help_ in (
                ("steered", "packets", "Frames a steering rule sent to its CPU or socket"),
                ("steered", "bytes", "Bytes a steering rule sent to its CPU or socket"),
                ("missed", "packets", "Frames a steering rule matched whose target was missing (they went on)"),
                ("missed", "bytes", "Bytes a steering rule matched whose target was missing"),
            )
        }
        for r in rows:
            values = [str(r.rule.id), str(r.position), r.rule.action, r.rule.describe()]
            families["steered", "packets"].add_metric(values, r.packets)
            families["steered", "bytes"].add_metric(values, r.bytes)
            families["missed", "packets"].add_metric(values, r.missed)
            families["missed", "bytes"].add_metric(values, r.missed_bytes)
        yield from families.values()

    def _daemon_metrics(self, d: Daemon) -> Iterator[Metric]:
        age = time.monotonic() - d.stats.snapshot_at if d.stats.snapshot_at else float("nan")
        yield GaugeMetricFamily(
            "xdprouter_snapshot_age_seconds", "Seconds since the snapshot was last renewed", value=age
        )
        renewals = CounterMetricFamily(
            "xdprouter_snapshot_renewals", "Snapshot renewals by what caused them", labels=["cause"]
        )
        for cause, n in sorted(d.stats.renewals.items()):
            renewals.add_metric([cause], n)
        yield renewals
        yield GaugeMetricFamily(
            "xdprouter_snapshot_renewal_seconds", "How long the last renewal took", value=d.stats.last_renewal_seconds
        )
        reloads = CounterMetricFamily("xdprouter_reloads", "Configuration reloads by result", labels=["result"])
        for result, n in sorted(d.stats.reloads.items()):
            reloads.add_metric([result], n)
        yield reloads
        last = d.stats.last_reload
        yield GaugeMetricFamily(
            "xdprouter_last_reload_success",
            "1 if the last reload was accepted (1 before any)",
            value=int(last.ok if last else 1),
        )
        yield GaugeMetricFamily(
            "xdprouter_last_reload_timestamp_seconds",
            "When the last reload was answered (0: none)",
            value=last.when if last else 0,
        )
        yield GaugeMetricFamily(
            "xdprouter_daemon_start_timestamp_seconds", "When the daemon started", value=d.stats.started
        )


def registry(router: Router, daemon: Daemon | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RouterCollector(router, daemon))
    return reg


def serve(listen: tuple[str, int], daemon: Daemon) -> Any:
    """Serve /metrics on ``listen`` from a thread; returns the server (``shutdown()``)."""
    server, _thread = start_http_server(listen[1], listen[0], registry(daemon.router, daemon))
    return server

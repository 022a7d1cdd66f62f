"""The daemon as a service: reload (SIGHUP and ``xdprouter reload``) with
refused configs changing nothing, SIGTERM and kill -9 leaving the fast path
attached and the next daemon adopting it with counters going on, all under
a numbered flow that must lose nothing; /metrics equal to ``stats --json``."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from xdprouter.firewall import Firewall
from xdprouter.lab import Lab, netns

from .conftest import DaemonProc, resolve_neighbours, stats
from .flow import Flow

BASE = """\
[router]
interfaces = ["veth1", "veth2"]
mode = "native"
{extra}
[metrics]
listen = "127.0.0.1:9437"
"""

FW_A = """
[firewall]
policy = { veth2 = "allow" }

[firewall.sets]
docs = ["192.0.2.0/24", "198.51.100.0/24"]

[[firewall.rules]]
action = "drop"
src = "@docs"

[[firewall.rules]]
action = "drop"
proto = "udp"
dport = "9"
"""

FW_B = """
[firewall]

[[firewall.rules]]
action = "drop"
src = "203.0.113.0/24"

[[firewall.rules]]
action = "limit"
proto = "icmp"
pps = 1000
"""

REFUSED = [
    BASE.format(extra='mode_typo = "auto"'),  # unknown key
    BASE.format(extra="") + FW_B.replace("pps = 1000", 'pps = "lots"'),  # wrong type
    BASE.format(extra="").replace('"veth2"]', '"veth9"]'),  # unknown interface
    BASE.format(extra="") + FW_B.replace('src = "203.0.113.0/24"', 'src = "203.0.113.0/24"\nsrc = "192.0.2.1"'),  # dup
]


def _rules(lab: Lab) -> list[str]:
    with netns(lab.router):
        return [r.describe() for r in Firewall().rules()]


def _forwarded(lab: Lab) -> int:
    return sum(int(stats(lab)[i]["forwarded"]) for i in ("veth1", "veth2"))  # type: ignore[call-overload]


def _prog_ids(lab: Lab) -> set[int]:
    out = json.loads(lab.xdprouter("status", "--json").stdout)
    return {int(s["prog_id"]) for s in out}


def test_reload_under_load(lab: Lab, daemons: Callable[..., DaemonProc]) -> None:
    """20 reloads, every third one refused, while a flow goes through the
    router: nothing lost, the last accepted rules in force, a refused reload
    answered with one line and a non-zero exit."""
    resolve_neighbours(lab)
    d = daemons(BASE.format(extra="") + FW_A)
    config = d.config
    rules_a = _rules(lab)
    assert rules_a == ["drop src @docs", "drop udp dport 9"]
    expected = rules_a
    with Flow(lab) as flow:
        time.sleep(0.3)
        for i in range(20):
            if i % 3 == 2:
                config.write_text(REFUSED[i % len(REFUSED)])
                out = lab.xdprouter("reload", check=False)
                assert out.returncode == 1, out
                lines = out.stderr.strip().splitlines()
                assert len(lines) == 1 and "refused, nothing changed" in lines[0], out.stderr
            else:
                config.write_text(BASE.format(extra="") + (FW_B if i % 2 else FW_A))
                if i % 4 == 0:
                    d.notifications(0.01)  # forget earlier ones
                    d.proc.send_signal(signal.SIGHUP)  # as systemctl reload does
                    d.wait_ready(10)
                else:
                    out = lab.xdprouter("reload")
                    assert "reloaded" in out.stdout
                expected = _rules(lab)
                assert expected == (["drop src 203.0.113.0/24", "limit icmp 1000 pps burst 1000"] if i % 2 else rules_a)
            assert _rules(lab) == expected  # a refused one changed nothing
            time.sleep(0.05)
        time.sleep(0.3)
    assert flow.sent > 1000
    assert flow.lost() == [], f"{len(flow.lost())} of {flow.sent} lost"
    assert _forwarded(lab) >= flow.sent * 0.9  # the flow went through the fast path
    assert d.proc.poll() is None


def test_restart_adopts(lab: Lab, daemons: Callable[..., DaemonProc]) -> None:
    """SIGTERM, then kill -9: the fast path stays attached (same program),
    the next daemon adopts it, counters and firewall rule counters go on,
    and the flow loses nothing."""
    resolve_neighbours(lab)
    text = BASE.format(extra="") + FW_A
    d = daemons(text)
    prog = _prog_ids(lab)
    with Flow(lab) as flow:
        time.sleep(0.5)
        for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGTERM):
            before = _forwarded(lab)
            assert d.stop(sig) == (0 if sig == signal.SIGTERM else -9)
            time.sleep(0.2)
            assert _prog_ids(lab) == prog  # still attached while no daemon runs
            assert _forwarded(lab) > before  # and forwarding
            d = daemons(text)
            assert _prog_ids(lab) == prog  # adopted, not reloaded
            assert _forwarded(lab) >= before  # counters kept
        time.sleep(0.3)
    assert flow.lost() == [], f"{len(flow.lost())} of {flow.sent} lost"
    assert "adopting the fast path attached to veth1, veth2" in d.log()


def test_sigterm_detaches_when_told(lab: Lab, daemons: Callable[..., DaemonProc]) -> None:
    d = daemons(BASE.format(extra='on_exit = "detach"'))
    assert _prog_ids(lab)
    assert d.stop() == 0
    assert _prog_ids(lab) == set()
    assert "detached from veth1, veth2" in d.log()


def _scrape(lab: Lab) -> dict[str, list[tuple[dict[str, str], float]]]:
    with netns(lab.router):
        text = urllib.request.urlopen("http://127.0.0.1:9437/metrics", timeout=10).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_equal_stats(lab: Lab, daemons: Callable[..., DaemonProc]) -> None:
    resolve_neighbours(lab)
    daemons(BASE.format(extra="") + FW_A)
    lab.run(lab.h1.ns, "ping", "-c", "5", "-i", "0.01", lab.h2.ip4)
    lab.run(lab.h1.ns, "ping", "-6", "-c", "5", "-i", "0.01", lab.h2.ip6)
    m = _scrape(lab)
    js = stats(lab)
    for iface in ("veth1", "veth2"):
        for verdict in ("forwarded", "dropped", "aborted"):
            got = sum(
                v
                for labels, v in m["xdprouter_packets_total"]
                if labels["interface"] == iface and labels["verdict"] == verdict
            )
            assert got == js[iface][verdict], (iface, verdict)
        fwd = sum(
            v
            for labels, v in m["xdprouter_bytes_total"]
            if labels["interface"] == iface and labels["verdict"] == "forwarded"
        )
        assert fwd == js[iface]["bytes"]["forwarded"]  # type: ignore[index]
    assert js["veth1"]["forwarded"] >= 8
    attached = {(lb["interface"], lb["mode"]) for lb, v in m["xdprouter_interface_attached"] if v == 1}
    assert attached == {("veth1", "native"), ("veth2", "native")}
    rules = {lb["rule"] for lb, _ in m["xdprouter_firewall_rule_packets_total"]}
    assert rules == {"drop src @docs", "drop udp dport 9"}
    assert m["xdprouter_snapshot_age_seconds"][0][1] >= 0
    assert {lb["result"]: v for lb, v in m["xdprouter_reloads_total"]} == {"accepted": 0, "refused": 0}
    assert m["xdprouter_last_reload_success"][0][1] == 1

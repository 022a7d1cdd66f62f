"""The daemon's [steer] section: applied at start, on reload only when it
changed (counters go on otherwise), a refused reload changing nothing."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from xdprouter.lab import Lab, netns
from xdprouter.steer import Steering

from .conftest import DaemonProc

BASE = """\
[router]
interfaces = ["veth1", "veth2"]
mode = "native"

[firewall]

[firewall.sets]
h1 = ["10.1.0.0/24"]
"""

STEER_A = """
[[steer.rules]]
action = "cpu"
cpu = 1
queue_size = 512
proto = "udp"
dport = 5353

[[steer.rules]]
action = "xsk"
src = "@h1"
iface = "veth1"
"""

STEER_B = """
[[steer.rules]]
action = "cpu"
cpu = 0
"""


def _rules(lab: Lab) -> list[tuple[int, str]]:
    with netns(lab.router):
        return [(r.id, r.describe()) for r in Steering().rules()]


def test_steer_section(lab: Lab, daemons: Callable[..., DaemonProc]) -> None:
    d = daemons(BASE + STEER_A)
    first = _rules(lab)
    assert [what for _, what in first] == ["cpu 1 (queue 512) udp dport 5353", "xsk iface veth1 src @h1"]
    out = lab.xdprouter("reload")  # unchanged: the same rules, the same ids
    assert "reloaded" in out.stdout and _rules(lab) == first
    d.config.write_text(BASE + STEER_A.replace("cpu = 1", "cpu = 63"))
    out = lab.xdprouter("reload", check=False)
    assert out.returncode == 1 and "steer.rules[0].cpu: CPU 63 is not online" in out.stderr
    assert _rules(lab) == first
    d.config.write_text(BASE + STEER_B)
    assert "reloaded" in lab.xdprouter("reload").stdout
    assert [what for _, what in _rules(lab)] == ["cpu 0 (queue 2048) every frame"]
    d.config.write_text(BASE)  # no [steer]: the rules are left alone
    assert "reloaded" in lab.xdprouter("reload").stdout
    assert [what for _, what in _rules(lab)] == ["cpu 0 (queue 2048) every frame"]
    d.config.write_text(BASE + "[steer]\n")  # an empty section: none
    assert "reloaded" in lab.xdprouter("reload").stdout
    assert _rules(lab) == []


def test_steer_metrics(lab: Lab, daemons: Callable[..., DaemonProc]) -> None:
    daemons(BASE + STEER_A + '\n[metrics]\nlisten = "127.0.0.1:9437"\n')
    with netns(lab.router):
        text = urllib.request.urlopen("http://127.0.0.1:9437/metrics", timeout=5).read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    rules = {s.labels["rule"] for s in fams["xdprouter_steer_rule_steered_packets"].samples}
    assert rules == {"cpu 1 (queue 512) udp dport 5353", "xsk iface veth1 src @h1"}
    assert {s.value for s in fams["xdprouter_steer_rule_missed_packets"].samples} == {0.0}

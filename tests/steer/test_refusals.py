"""Bad input: one line, a non-zero exit, nothing changed."""

from __future__ import annotations

import json

import pytest

from xdprouter import xsk
from xdprouter.errors import UsageError
from xdprouter.lab import netns
from xdprouter.steer import Steering, SteerRule

from .conftest import SteerLab

REFUSED = [
    (["--action", "cpu", "--cpu", "63"], "CPU 63 is not online"),
    (["--action", "cpu", "--cpu", "64"], "argument --cpu: 64 is out of range"),
    (["--action", "cpu"], "a cpu rule needs --cpu N"),
    (["--action", "cpu", "--cpu", "1", "--queue-size", "0"], "argument --queue-size: 0 is out of range"),
    (["--action", "cpu", "--cpu", "1", "--queue-size", "16385"], "argument --queue-size: 16385 is out of range"),
    (["--action", "xsk", "--cpu", "1"], "--cpu and --queue-size belong to cpu rules"),
    (["--action", "fast"], "argument --action: invalid choice"),
    (["--action", "xsk", "--src", "10.0.0.0/33"], "bad source prefix"),
    (["--action", "xsk", "--src", "10.0.0.0/8", "--dst", "fd00::/8"], "different families"),
    (["--action", "xsk", "--dport", "99999"], "argument --dport"),
    (["--action", "xsk", "--proto", "gre", "--dport", "1"], "protocol 47 has no ports"),
    (["--action", "xsk", "--icmp-type", "8"], "--icmp-type needs --proto icmp"),
    (["--action", "xsk", "--iface", "nope0"], "no interface 'nope0'"),
    (["--action", "xsk", "--dst", "@nope"], "unknown set 'nope'"),
    (["--action", "xsk", "--pps", "5"], "unrecognized arguments: --pps"),
    (["--action", "xsk", "--position", "3"], "position 3 out of range (0-1)"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_cli_refuses(sl: SteerLab, args: list[str], message: str) -> None:
    sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=0, proto="udp", dport="53")))
    before = sl.lab.xdprouter("steer", "list", "--json").stdout
    out = sl.lab.xdprouter("steer", "add", *args, check=False)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdprouter: error:") and message in lines[0], out.stderr
    assert sl.lab.xdprouter("steer", "list", "--json").stdout == before


def test_cli_round_trip(sl: SteerLab) -> None:
    out = sl.lab.xdprouter("steer", "add", "--action", "cpu", "--cpu", "1", "--proto", "udp", "--dport", "5353")
    assert out.stdout.strip().endswith("cpu 1 udp dport 5353")
    sl.lab.xdprouter("steer", "add", "--action", "xsk", "--iface", "veth1", "--position", "0")
    rows = json.loads(sl.lab.xdprouter("steer", "list", "--json").stdout)
    assert [(r["position"], r["action"]) for r in rows] == [(0, "xsk"), (1, "cpu")]
    assert rows[1]["queue_size"] == 2048 and rows[1]["dport"] == "5353" and rows[1]["packets"] == 0
    assert "MISSED" in sl.lab.xdprouter("steer", "list").stdout
    bad = sl.lab.xdprouter("steer", "del", "99", check=False)
    assert bad.returncode == 1 and "no steering rule with id 99" in bad.stderr
    sl.lab.xdprouter("steer", "del", str(rows[0]["id"]))
    assert [r["action"] for r in json.loads(sl.lab.xdprouter("steer", "list", "--json").stdout)] == ["cpu"]
    sl.lab.xdprouter("steer", "flush")
    assert json.loads(sl.lab.xdprouter("steer", "list", "--json").stdout) == []


def test_queue_sizes(sl: SteerLab) -> None:
    sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, queue_size=100, dport="1")))
    with pytest.raises(UsageError, match="CPU 1 given two queue sizes"):
        sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, queue_size=200, dport="2")))
    sl.steer(lambda s: s.add(SteerRule.parse("cpu", cpu=1, dport="3")))  # the entry as it is
    assert [r.queue_size for r in sl.steer(lambda s: s.rules())] == [100, 100]


def test_socket_refusals(sl: SteerLab) -> None:
    lab = sl.lab
    lab.ip(lab.router, "link", "add", "dum0", "type", "veth", "peer", "name", "dum1")
    try:
        for name in ("dum0", "dum1"):
            lab.ip(lab.router, "link", "set", name, "up")
        with netns(lab.router):
            with pytest.raises(UsageError, match=r"^dum0 is not attached to xdprouter"):
                Steering().open_socket("dum0", 0)
            queues = xsk.queue_count("veth1")
            with pytest.raises(UsageError, match=rf"^veth1 has {queues} queues? .*no queue {queues}$"):
                Steering().open_socket("veth1", queues)
            with xsk.Socket("dum0", 0, mode="copy") as sock, pytest.raises(UsageError, match="not attached"):
                Steering().bind_socket(sock)
    finally:
        lab.ip(lab.router, "link", "del", "dum0", check=False)

"""Bad configuration files: one line naming the file, line and key; exit
status 1; nothing attached, nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdprouter.lab import Lab

GOOD = """\
[router]
interfaces = ["veth1", "veth*"]
mode = "auto"

[metrics]
listen = "127.0.0.1:9437"

[firewall]
policy = { veth2 = "allow" }

[firewall.sets]
docs = ["192.0.2.0/24"]

[[firewall.rules]]
action = "drop"
src = "@docs"
"""

STEER = """
[[steer.rules]]
action = "cpu"
cpu = 1
proto = "udp"
dport = 5353
"""

BAD = [
    ("unknown key", GOOD.replace('mode = "auto"', 'mdoe = "auto"'), ":3: router.mdoe: unknown key"),
    ("wrong type", GOOD.replace('mode = "auto"', "mode = 1"), ":3: router.mode: must be a string, not an integer"),
    ("bad mode", GOOD.replace('mode = "auto"', 'mode = "fast"'), ":3: router.mode: unknown value 'fast'"),
    (
        "unknown interface",
        GOOD.replace('"veth1", "veth*"', '"veth7"'),
        ":2: router.interfaces: unknown interface 'veth7'",
    ),
    ("rule iface", GOOD.replace('src = "@docs"', 'src = "@docs"\niface = "eth9"'), ":17: firewall.rules[0].iface:"),
    ("unknown set", GOOD.replace('"@docs"', '"@nope"'), ":16: firewall.rules[0].src: unknown set 'nope'"),
    ("bad rule", GOOD.replace('action = "drop"', 'action = "reject"'), ":14: firewall.rules[0]: unknown action"),
    (
        "duplicate key",
        GOOD.replace('src = "@docs"', 'src = "@docs"\nsrc = "192.0.2.9"'),
        ":17: Cannot overwrite a value",
    ),
    ("duplicate table", GOOD + '\n[firewall.sets]\nother = ["10.0.0.0/8"]\n', ":18: Cannot declare"),
    ("bad listen", GOOD.replace("127.0.0.1:9437", "localhost"), ":6: metrics.listen:"),
    ("no router", GOOD.replace("[router]", "[routr]"), ":1: routr: unknown key"),
    ("steer key", GOOD + STEER.replace("cpu = 1", "cpus = 1"), ":20: steer.rules[0].cpus: unknown key"),
    ("steer action", GOOD + STEER.replace('"cpu"', '"gpu"'), ":18: steer.rules[0]: unknown steering action"),
    ("steer cpu", GOOD + STEER.replace("cpu = 1", "cpu = 63"), ":20: steer.rules[0].cpu: CPU 63 is not online"),
    ("steer match", GOOD + STEER.replace("dport = 5353", "dport = 70000"), ":18: steer.rules[0]: destination port"),
    (
        "steer type",
        GOOD + STEER.replace("dport = 5353", "dport = 1.5"),
        ":22: steer.rules[0].dport: must be a string or an integer",
    ),
    ("steer iface", GOOD + STEER + 'iface = "eth9"\n', ":23: steer.rules[0].iface: unknown interface 'eth9'"),
    ("steer set", GOOD + STEER + 'src = "@nope"\n', ":23: steer.rules[0].src: unknown set 'nope'"),
    (
        "steer queues",
        GOOD + STEER + "queue_size = 64\n" + STEER + "queue_size = 128\n",
        ":30: steer.rules[1].queue_size: CPU 1 already has queue size 64",
    ),
]


@pytest.mark.parametrize("name,text,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_config(lab: Lab, tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for cmd in (("config", "check", str(path)), ("daemon", "--config", str(path))):
        out = lab.xdprouter(*cmd, check=False)
        assert out.returncode == 1, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith(f"xdprouter: error: {path}"), lines[0]
        assert expected in lines[0], lines[0]
    assert lab.xdprouter("status", "--json").stdout.strip() == "[]"  # nothing attached


def test_unreadable(lab: Lab, tmp_path: Path) -> None:
    for path, why in ((tmp_path / "missing.toml", "No such file"), (tmp_path, "Is a directory")):
        out = lab.xdprouter("config", "check", str(path), check=False)
        assert out.returncode == 1
        assert out.stderr.strip() == f"xdprouter: error: {path}: cannot read: {why}" + (
            " or directory" if why == "No such file" else ""
        )


def test_good_config(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    out = lab.xdprouter("config", "check", str(path))
    assert out.stdout.strip() == f"{path}: ok (2 interface patterns, 1 firewall rules)"
    assert lab.xdprouter("status", "--json").stdout.strip() == "[]"  # checked, nothing touched


def test_steer_config(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD + STEER + 'src = "@docs"\n' + STEER.replace('"cpu"', '"xsk"').replace("cpu = 1", ""))
    assert "ok" in lab.xdprouter("config", "check", str(path)).stdout


def test_example_config_is_valid(lab: Lab) -> None:
    example = Path(__file__).resolve().parents[2] / "packaging" / "xdprouter.toml"
    text = example.read_text().replace('"eth0", "eth1"', '"veth1", "veth2"')
    path = Path("/tmp") / f"xdpr-example-{lab.prefix}.toml"
    try:
        path.write_text(text)
        out = lab.xdprouter("config", "check", str(path))
        assert "ok" in out.stdout
    finally:
        path.unlink(missing_ok=True)

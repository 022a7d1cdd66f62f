"""The AF_XDP examples, run as an operator would, on the router's veth1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from xdprouter.lab import Lab, netns

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def start(lab: Lab, script: str, *args: str) -> subprocess.Popen[str]:
    proc = lab.popen(lab.router, sys.executable, str(EXAMPLES / script), *args)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "counting on ..." / "answering ..." once the sockets are bound
    assert line and proc.poll() is None, line + proc.stderr.read()
    return proc


def test_flow_counter(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "flows.json"
    lab.sysctl(lab.h1.ns, "net.ipv6.conf.eth0.disable_ipv6", "1")  # h1's own IPv6 frames would be flows too
    proc = start(lab, "xsk_flow_counter.py", "veth1", "--count", "30", "--sample", "10", "--out", str(out))
    try:
        with netns(lab.h1.ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lab.ip(lab.h1.ns, "neigh", "replace", "10.1.0.1", "lladdr", lab.mac(lab.router, "veth1"), "dev", "eth0")
        with s:
            for i in range(30):
                s.sendto(b"x" * (10 + i % 2), ("10.1.0.1", 5000 + i % 2))
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    report = json.loads(out.read_text())
    assert report["frames"] == 30 and report["dropped_by_kernel"] == 0
    flows = {tuple(f["flow"][3:]): f for f in report["flows"]}
    assert len(flows) == 2
    for f in report["flows"]:
        assert f["flow"][:3] == [17, "10.1.0.2", "10.1.0.1"]
        assert f["packets"] == 15
        assert f["bytes"] == 15 * (14 + 20 + 8 + 10 + (f["flow"][4] - 5000))
    assert sum(len(f["samples"]) for f in report["flows"]) == 3
    sample = bytes.fromhex(next(f for f in report["flows"] if f["samples"])["samples"][0])
    assert sample[30:34] == bytes([10, 1, 0, 1])


def test_udp_responder(lab: Lab) -> None:
    """ARP and UDP answered by Python; the replies reach h1's socket."""
    lab.ip(lab.router, "addr", "flush", "dev", "veth1")  # the kernel has no address to answer for
    proc = start(lab, "xsk_udp_responder.py", "veth1", "--ip", "10.1.0.1", "--port", "7", "--count", "5")
    try:
        with netns(lab.h1.ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.settimeout(3)
            for i in range(5):
                msg = f"hello {i} ".encode() * (i + 1)
                s.sendto(msg, ("10.1.0.1", 7))
                data, peer = s.recvfrom(2048)
                assert (data, peer) == (msg, ("10.1.0.1", 7))
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and "5 replies" in proc.stderr.read()
    finally:
        proc.kill()
    # h1 learnt the responder's MAC from its ARP answer
    neigh = lab.ip(lab.h1.ns, "neigh", "show", "10.1.0.1").stdout
    assert lab.mac(lab.router, "veth1") in neigh


def test_unknown_interface(lab: Lab) -> None:
    proc = lab.run(lab.router, sys.executable, str(EXAMPLES / "xsk_flow_counter.py"), "nosuch0", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "xsk_flow_counter: error: unknown interface: nosuch0"

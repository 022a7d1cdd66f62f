"""The ``xdprouter`` command as an operator runs it: a separate process under
``ip netns exec`` every time, bad input answered with one line and no change."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdprouter.dataplane import abi
from xdprouter.lab import Lab, sh

from .traffic import VERDICTS, ping, reason, received, stats, status, verdict, xdp_of

XDP_MODE = {1: "native", 2: "generic", 3: "offload"}

FOREIGN_C = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int foreign_pass(struct xdp_md *ctx) { return XDP_PASS; }
char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def foreign_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trivial XDP_PASS program that is not xdprouter's."""
    d = tmp_path_factory.mktemp("foreign")
    (d / "foreign.c").write_text(FOREIGN_C)
    sh(
        "clang",
        "-O2",
        "-g",
        "-target",
        "bpf",
        "-I/usr/include/x86_64-linux-gnu",
        "-c",
        str(d / "foreign.c"),
        "-o",
        str(d / "foreign.o"),
    )
    return d / "foreign.o"


def attached_progs(lab: Lab, iface: str) -> list[tuple[str, int, str]]:
    """(mode, prog id, prog name) of every XDP program ``ip link`` shows on the router's ``iface``."""
    xdp = xdp_of(lab, lab.router, iface)
    if xdp is None:
        return []
    entries = xdp.get("attached") or [xdp]
    assert isinstance(entries, list)
    return [(XDP_MODE[e["mode"]], int(e["prog"]["id"]), str(e["prog"]["name"])) for e in entries]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, nothing on stdout, a single ``xdprouter: error:`` line on stderr."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("xdprouter: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(lab: Lab) -> tuple[list[dict[str, object]], dict[str, list[tuple[str, int, str]]]]:
    """Everything an erroneous command must leave unchanged."""
    return status(lab), {i: attached_progs(lab, i) for i in lab.router_ifaces}


# -- bad input ----------------------------------------------------------------


def test_attach_unknown_interface_changes_nothing(lab: Lab) -> None:
    proc = lab.xdprouter("attach", "veth1", "nope0", check=False)
    assert_one_line_error(proc, "unknown interface", "nope0")
    assert status(lab) == []
    assert attached_progs(lab, "veth1") == []
    assert attached_progs(lab, "veth2") == []


def test_detach_unknown_interface_changes_nothing(attached_lab: Lab) -> None:
    lab = attached_lab
    before = snapshot(lab)
    proc = lab.xdprouter("detach", "nope0", check=False)
    assert_one_line_error(proc, "unknown interface", "nope0")
    proc = lab.xdprouter("detach", "veth1", "nope0", check=False)
    assert_one_line_error(proc, "nope0")
    assert snapshot(lab) == before
    assert len(before[0]) == 2


def test_detach_of_interface_not_attached(lab: Lab) -> None:
    proc = lab.xdprouter("detach", "veth1", check=False)
    assert_one_line_error(proc, "not attached", "veth1")
    lab.xdprouter("attach", "veth2")
    before = snapshot(lab)
    proc = lab.xdprouter("detach", "veth1", check=False)
    assert_one_line_error(proc, "not attached", "veth1")
    proc = lab.xdprouter("detach", "veth1", "veth2", check=False)
    assert_one_line_error(proc, "not attached", "veth1")
    proc = lab.xdprouter("detach", check=False)
    assert_one_line_error(proc, "--all")
    assert snapshot(lab) == before
    assert [row["iface"] for row in before[0]] == ["veth2"]
    lab.xdprouter("detach", "--all")
    # nothing attached: --all is not an error, and says so
    proc = lab.xdprouter("detach", "--all")
    assert proc.stdout.strip() == "xdprouter is not attached here"


@pytest.mark.parametrize("foreign_mode", ["xdpgeneric", "xdpdrv"])
def test_foreign_program_refused_without_force_replaced_with_it(
    lab: Lab, foreign_object: Path, foreign_mode: str
) -> None:
    lab.ip(lab.router, "link", "set", "dev", "veth1", foreign_mode, "obj", str(foreign_object), "sec", "xdp")
    try:
        ((mode, foreign_id, name),) = attached_progs(lab, "veth1")
        assert name == "foreign_pass"
        proc = lab.xdprouter("attach", "veth1", "veth2", check=False)
        assert_one_line_error(proc, "another XDP program", "veth1", str(foreign_id), "--force")
        # refused as a whole: the foreign program stays, veth2 untouched
        assert attached_progs(lab, "veth1") == [(mode, foreign_id, "foreign_pass")]
        assert attached_progs(lab, "veth2") == []
        assert status(lab) == []

        proc = lab.xdprouter("attach", "--force", "veth1", "veth2", check=False)
        assert proc.returncode == 0, proc.stderr
        rows = status(lab)
        assert [r["iface"] for r in rows] == ["veth1", "veth2"]
        prog_id = rows[0]["prog_id"]
        assert rows[1]["prog_id"] == prog_id != foreign_id
        progs = attached_progs(lab, "veth1")
        assert len(progs) == 1, progs
        assert progs[0][1:] == (prog_id, "xdp_router")
        # and it routes
        before = stats(lab)
        ping(lab, lab.h1.ns, "10.2.0.2", count=3, check=True)
        ping(lab, lab.h1.ns, "10.2.0.2", count=3, check=True)
        after = stats(lab)
        assert verdict(after, "veth1", "forwarded") - verdict(before, "veth1", "forwarded") >= 5
    finally:
        lab.xdprouter("detach", "--all", check=False)
        lab.ip(lab.router, "link", "set", "dev", "veth1", foreign_mode, "off", check=False)


@pytest.mark.parametrize(
    "args",
    [["attach", "veth1"], ["refresh"], ["detach", "--all"], ["detach", "veth2"], ["status"], ["stats", "--json"]],
    ids=lambda a: "-".join(a),
)
def test_non_root_gets_one_line_error(attached_lab: Lab, args: list[str]) -> None:
    lab = attached_lab
    before = snapshot(lab)
    proc = lab.run(
        lab.router,
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        sys.executable,
        "-m",
        "xdprouter.cli",
        *args,
        check=False,
    )
    assert_one_line_error(proc, "root")
    assert snapshot(lab) == before


# -- attach and detach ----------------------------------------------------------


def test_attach_is_idempotent(attached_lab: Lab) -> None:
    lab = attached_lab
    rows = status(lab)
    prog_id = rows[0]["prog_id"]
    ping(lab, lab.h1.ns, "10.2.0.2", count=1, check=True)
    ping(lab, lab.h1.ns, "10.2.0.2", count=3, check=True)
    before = stats(lab)
    assert verdict(before, "veth1", "forwarded") >= 3

    out = lab.xdprouter("attach", "--mode", "native", "veth1", "veth2").stdout
    assert out.splitlines() == [
        f"attached to veth1 (native, prog id {prog_id})",
        f"attached to veth2 (native, prog id {prog_id})",
    ]
    lab.xdprouter("attach", "veth1")  # auto keeps the current mode
    assert status(lab) == rows
    for iface in lab.router_ifaces:
        assert attached_progs(lab, iface) == [("native", prog_id, "xdp_router")]
    # the counters were not reset by attaching again
    after = stats(lab)
    for iface in lab.router_ifaces:
        for v in VERDICTS:
            assert verdict(after, iface, v) >= verdict(before, iface, v)


def test_state_is_found_again_by_separate_processes(lab: Lab) -> None:
    lab.xdprouter("attach", "--mode", "native", "veth1", "veth2")  # process 1 loads and exits
    try:
        rows = status(lab)  # process 2
        assert [(r["iface"], r["mode"]) for r in rows] == [("veth1", "native"), ("veth2", "native")]
        ping(lab, lab.h1.ns, "10.2.0.2", count=1, check=True)
        ping(lab, lab.h1.ns, "10.2.0.2", count=4, check=True)
        snap = stats(lab)  # process 3 reads the maps of the program process 1 loaded
        assert verdict(snap, "veth1", "forwarded") >= 4
        assert reason(snap, "veth2", "forward") >= 4
        assert lab.xdprouter("detach", "veth2").stdout.strip() == "detached from veth2"  # process 4
        assert [r["iface"] for r in status(lab)] == ["veth1"]  # process 5
        assert set(stats(lab)) - {"(unconfigured)"} == {"veth1"}
        assert verdict(stats(lab), "veth1", "forwarded") == verdict(snap, "veth1", "forwarded")
        assert lab.xdprouter("detach", "--all").stdout.strip() == "detached from veth1"
        assert status(lab) == []
        assert "not attached" in lab.xdprouter("stats").stdout
    finally:
        lab.xdprouter("detach", "--all", check=False)


def test_mode_generic_then_native(lab: Lab) -> None:
    try:
        out = lab.xdprouter("attach", "--mode", "generic", "veth1", "veth2").stdout
        assert "attached to veth1 (generic," in out and "attached to veth2 (generic," in out
        rows = status(lab)
        assert [(r["mode"], r["route_hint"]) for r in rows] == [("generic", False)] * 2
        prog_id = rows[0]["prog_id"]
        for iface in lab.router_ifaces:
            assert attached_progs(lab, iface) == [("generic", prog_id, "xdp_router")]
        ping(lab, lab.h1.ns, "10.2.0.2", count=1, check=True)
        before = stats(lab)
        rc, out = ping(lab, lab.h1.ns, "10.2.0.2", count=3)
        assert rc == 0 and received(out) == 3, out
        after = stats(lab)
        assert verdict(after, "veth1", "forwarded") - verdict(before, "veth1", "forwarded") == 3

        out = lab.xdprouter("attach", "--mode", "native", "veth1", "veth2").stdout
        assert "attached to veth1 (native," in out and "attached to veth2 (native," in out
        rows = status(lab)
        assert [(r["mode"], r["route_hint"]) for r in rows] == [("native", True)] * 2
        assert {r["prog_id"] for r in rows} == {prog_id}
        text = lab.xdprouter("status").stdout.splitlines()
        assert text[0].split()[-2:] == ["ROUTE", "HINT"] and [line.split()[-1] for line in text[1:3]] == ["on"] * 2
        for iface in lab.router_ifaces:
            assert attached_progs(lab, iface) == [("native", prog_id, "xdp_router")]
        before = stats(lab)
        rc, out = ping(lab, lab.h1.ns, "10.2.0.2", count=3)
        assert rc == 0 and received(out) == 3, out
        after = stats(lab)
        assert verdict(after, "veth1", "forwarded") - verdict(before, "veth1", "forwarded") == 3
    finally:
        lab.xdprouter("detach", "--all", check=False)


def test_status_says_when_ipv6_lookups_walk_the_local_table(attached_lab: Lab) -> None:
    """An IPv6 address added after attach: full lookups at once (status says
    so, with what to do), the main table alone again after the next attach."""
    lab = attached_lab

    def ipv6_line() -> str:
        return lab.xdprouter("status").stdout.splitlines()[-1]

    assert "main table alone" in ipv6_line()
    lab.ip(lab.router, "-6", "addr", "add", "fd02::77/64", "dev", "veth2", "nodad")
    try:
        line = ipv6_line()
        assert "local table, then the main table" in line and "xdprouter refresh" in line, line
        assert [r["ipv6_main_table_only"] for r in status(lab)] == [False, False]
        assert lab.xdprouter("refresh").stdout == "refreshed\n"
        assert "main table alone" in ipv6_line()
    finally:
        lab.ip(lab.router, "-6", "addr", "del", "fd02::77/64", "dev", "veth2", check=False)
        lab.xdprouter("attach", "--mode", "native", *lab.router_ifaces)


def test_refresh_when_not_attached(lab: Lab) -> None:
    proc = lab.xdprouter("refresh", check=False)
    assert_one_line_error(proc, "not attached")
    assert status(lab) == []


def test_attach_without_probe_object_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    """`make bpf` builds the probe beside the router's object; without it,
    attach refuses before touching anything."""
    obj = tmp_path / "xdp_router.bpf.o"
    obj.write_bytes((Path(__file__).resolve().parents[2] / "build" / "xdp_router.bpf.o").read_bytes())
    proc = lab.run(
        lab.router,
        "env",
        f"XDPROUTER_BPF_OBJECT={obj}",
        sys.executable,
        "-m",
        "xdprouter.cli",
        "attach",
        "veth1",
        check=False,
    )
    assert_one_line_error(proc, "fib6_probe.bpf.o", "make bpf")
    assert status(lab) == []
    assert attached_progs(lab, "veth1") == []


def test_interface_that_goes_away(attached_lab: Lab) -> None:
    lab = attached_lab
    r, h1 = lab.router, lab.h1
    ping(lab, h1.ns, "10.2.0.2", count=2, check=True)
    lab.ip(r, "link", "del", "veth2")

    proc = lab.xdprouter("stats", "--json", check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    snap = json.loads(proc.stdout)
    assert "veth1" in snap and "veth2" not in snap
    assert verdict(snap, "veth1", "forwarded") >= 1
    proc = lab.xdprouter("stats", check=False)
    assert proc.returncode == 0 and proc.stderr == "" and "veth1" in proc.stdout, proc.stderr
    proc = lab.xdprouter("status", check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert [row["iface"] for row in status(lab)] == ["veth1"]

    # veth1 still hands what is not forwardable to the kernel
    before = stats(lab)
    rc, out = ping(lab, h1.ns, "10.1.0.1", count=3)
    assert rc == 0 and received(out) == 3, out
    rc, out = ping(lab, h1.ns, "fd01::1", count=3)
    assert rc == 0 and received(out) == 3, out
    after = stats(lab)
    assert verdict(after, "veth1", "passed") - verdict(before, "veth1", "passed") >= 6
    assert reason(after, "veth1", "not_forwarded") - reason(before, "veth1", "not_forwarded") >= 6
    assert verdict(after, "veth1", "aborted") == verdict(before, "veth1", "aborted")

    proc = lab.xdprouter("detach", "veth2", check=False)
    assert_one_line_error(proc, "veth2")
    assert lab.xdprouter("detach", "--all").stdout.strip() == "detached from veth1"
    assert status(lab) == []


# -- output formats ---------------------------------------------------------------


def test_status_and_stats_json_shapes(attached_lab: Lab) -> None:
    lab = attached_lab
    ping(lab, lab.h1.ns, "10.2.0.2", count=3, check=True)
    ping(lab, lab.h1.ns, "fd02::2", count=3, check=True)

    rows = status(lab)
    assert [r["iface"] for r in rows] == ["veth1", "veth2"]
    for row in rows:
        assert set(row) == {"iface", "ifindex", "mode", "prog_id", "route_hint", "ipv6_main_table_only"}
        assert row["ipv6_main_table_only"] is True
        assert isinstance(row["ifindex"], int) and isinstance(row["prog_id"], int)
        iface = str(row["iface"])
        link = json.loads(lab.ip(lab.router, "-j", "link", "show", iface).stdout)[0]
        assert row["ifindex"] == link["ifindex"]
        assert [(row["mode"], row["prog_id"])] == [(m, i) for m, i, _ in attached_progs(lab, iface)]

    snap = stats(lab)
    assert set(snap) - {"(unconfigured)"} == {"veth1", "veth2"}
    reason_names = {r.name.lower(): r for r in abi.Reason}
    for counters in snap.values():
        assert set(counters) == {*VERDICTS, "bytes", "reasons"}
        by = counters["bytes"]
        reasons = counters["reasons"]
        assert isinstance(by, dict) and isinstance(reasons, dict)
        assert set(by) == set(VERDICTS)
        assert set(reasons) <= set(reason_names)
        for entry in reasons.values():
            assert set(entry) == {"packets", "bytes"}
            assert isinstance(entry["packets"], int) and entry["packets"] > 0
            assert entry["bytes"] >= 14 * entry["packets"]  # at least an Ethernet header each
        # each verdict is the sum of its reasons, packets and bytes
        for v in abi.Verdict:
            mine = [e for n, e in reasons.items() if reason_names[n].verdict is v]
            assert counters[v.name.lower()] == sum(e["packets"] for e in mine)
            assert by[v.name.lower()] == sum(e["bytes"] for e in mine)
    assert reason(snap, "veth1", "forward") >= 4  # the first of each family waited for ARP/ND


# -- stats --watch ------------------------------------------------------------------


@pytest.fixture
def watcher(attached_lab: Lab) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=5)


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_stats_watch_prints_rates(attached_lab: Lab, watcher: list[subprocess.Popen[str]], as_json: bool) -> None:
    lab = attached_lab
    ping(lab, lab.h1.ns, "10.2.0.2", count=1, check=True)
    args = ["stats", "--watch", "0.2", *(["--json"] if as_json else [])]
    proc = lab.popen(lab.router, sys.executable, "-m", "xdprouter.cli", *args)
    watcher.append(proc)
    # traffic while it watches: 20 pings 50 ms apart
    pinger = lab.popen(lab.h1.ns, "ping", "-n", "-c", "20", "-i", "0.05", "10.2.0.2")
    watcher.append(pinger)
    pinger.communicate(timeout=10)
    time.sleep(0.5)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGINT)  # ip netns exec exec()s: this is the CLI itself
    try:
        out, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("stats --watch still running 5 s after SIGINT (see the report: Ctrl-C inside pyroute2)")
    assert proc.returncode == 130, err
    # Known, racy (about 1 run in 30): a SIGINT that lands inside pyroute2's
    # netlink socket setup prints "Exception ignored in BaseEventLoop.__del__"
    # noise; not asserted here because no strict xfail can catch a race.
    assert "xdprouter: error" not in err, err

    rates: list[float] = []
    if as_json:
        for line in out.splitlines():
            snap = json.loads(line)
            assert set(snap) - {"(unconfigured)"} == {"veth1", "veth2"}
            r = snap["veth1"]["rates"]
            assert set(r) == set(VERDICTS)
            rates.append(float(r["forwarded"]))
    else:
        lines = out.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("veth1 "):
                assert lines[i + 1].startswith("  pkt/s"), lines[i : i + 2]
                rates.append(float(lines[i + 1].split()[1]))
    assert len(rates) >= 4, out
    # 20 requests in about a second: some interval saw several per second
    assert max(rates) >= 5, rates
    assert min(rates) >= 0, rates

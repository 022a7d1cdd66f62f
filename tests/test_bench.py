"""The benchmark's machinery on a small scale: every configuration and case
runs, delivers what was sent, and the report has every part. No rate is
asserted here (rates belong in `make bench`'s output, as ratios)."""

from __future__ import annotations

import json
import subprocess
import sys

from xdprouter.lab import bench, rig, xskbench


def test_bench_runs_every_case_and_configuration_and_delivers() -> None:
    report = bench.run(frames=20_000, reps=1, table_routes=2_000, log=lambda s: None, xsk=0.3)
    cases = {c.name for c in rig.default_cases(2_000)}
    assert {(r.case, r.config) for r in report.results} == {(c, k) for c in cases for k in rig.CONFIGS}
    for r in report.results:
        assert r.loss < 0.01, f"{r.case} {r.config} lost {r.loss:.2%}"
        assert r.mpps > 0
        if r.config != "linux":
            assert r.prog_ns_per_frame > 0, f"no bpf_stats for {r.config}"
    assert set(report.ratios) == cases
    assert report.instructions["xdprouter"]["verified"] > report.instructions["reference"]["verified"] > 0
    assert {"pass ttl_expired", "drop blackhole", "pass not_our_mac"} <= set(report.program_ns)
    assert set(report.forwarding_ns) == set(rig.CASES_64B)
    for case, by in report.forwarding_ns.items():
        assert set(by) == {"xdprouter", "reference"} and all(ns > 0 for ns in by.values()), case
    assert report.xsk is not None and report.xsk.xsk_pps > 0 and report.xsk.af_packet_pps > 0
    assert json.loads(json.dumps(report.as_dict()))["xsk"]["ratio"] > 0
    text = bench.table(report)
    assert "xdpr/linux" in text and "xsk.Port" in text


def test_bench_xsk_part_reports_figures() -> None:
    """The xsk part on a small scale: both readers read frames of the
    flood, every per-frame cost is measured, the table and JSON hold them."""
    r = xskbench.run(seconds=0.3, reps=1, rounds=3)
    assert r.xsk_pps > 0 and r.af_packet_pps > 0 and r.ratio > 0
    assert set(r.offered_pps) == {"xsk", "af_packet"} and all(v > 0 for v in r.offered_pps.values())
    assert set(r.ns_per_frame) == set(xskbench.COSTS)
    assert all(ns > 0 for ns in r.ns_per_frame.values()), r.ns_per_frame
    assert r.batch_ns_per_frame == r.ns_per_frame["recv"] > 0
    assert r.capacity_ratio > 0 and r.capacity_ratio_length > 0
    json.dumps(r.as_dict())
    text = xskbench.table(r)
    assert "xsk.Port" in text and "AF_PACKET" in text and "capacity ratio" in text


def test_cli_xsk_only_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xdprouter.cli", "bench", "--xsk-only", "--xsk", "0.3", "--reps", "1", "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    r = json.loads(out.stdout)
    assert r["xsk_pps"] > 0 and r["af_packet_pps"] > 0 and r["batch_ns_per_frame"] > 0

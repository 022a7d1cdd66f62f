"""The benchmark's machinery on a small scale: every configuration and case
runs, delivers what was sent, and the report has every part. No rate is
asserted here (rates belong in `make bench`'s output, as ratios)."""

from __future__ import annotations

import json

from xdprouter.lab import bench, rig


def test_bench_runs_every_case_and_configuration_and_delivers() -> None:
    report = bench.run(frames=20_000, reps=1, table_routes=2_000, log=lambda s: None)
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
    json.dumps(report.as_dict())
    assert "xdpr/linux" in bench.table(report)

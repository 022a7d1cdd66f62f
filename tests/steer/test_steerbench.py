"""The steering benchmark's machinery on a small scale (`xdprouter bench
--steer`): every configuration forwards without loss, the local flood
reaches the kernel's UDP with and without steering. No rate is asserted."""

from __future__ import annotations

import json

from xdprouter.lab import steerbench


def test_steer_bench_runs_every_configuration() -> None:
    r = steerbench.run(frames=40_000, reps=1, log=lambda s: None)
    assert [run.config for run in r.runs] == list(steerbench.CONFIGS)
    for run in r.runs:
        assert run.forward_pps > 0 and run.lost == 0, run
        if run.config == "alone":
            assert run.local_pps == 0
        else:
            assert run.local_pps > 0 and run.udp_pps > 0, run
    json.dumps(r.as_dict())
    assert "steered / local forwarding rate" in steerbench.table(r)

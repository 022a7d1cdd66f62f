"""`xdprouter bench --profile`: perf's report summed into the parts of a
frame's path, and a real profiled run of the benchmark's machinery."""

from __future__ import annotations

import pytest

from xdprouter.lab import bench, profile, rig

REPORT = """\
# Samples: 1K of event 'cpu-clock'
#
    30.00%  [k] fib_table_lookup
    20.00%  [k] pv_native_safe_halt
    10.00%  [k] bpf_prog_ee580cbde5dd23dc_xdp_router
     8.00%  [k] veth_xdp_rcv_one
     8.00%  [k] __netif_receive_skb_core.constprop.0
     4.00%  [k] bpf_prog_d2aa4081d7f65cad_xdp_loop_a
     4.00%  [k] page_pool_put_unrefed_netmem
     8.00%  [k] __rcu_read_lock
     8.00%  [.] some_user_function
"""


def test_summary_leaves_idle_out_and_sums_parts() -> None:
    p = profile.summarize(REPORT)
    assert p.samples_busy_share == pytest.approx(0.8)
    assert p.parts["FIB and neighbour lookup"] == pytest.approx(30 / 80)
    assert p.parts["program under test"] == pytest.approx(10 / 80)
    assert p.parts["Linux stack (skbs)"] == pytest.approx(8 / 80)
    assert p.parts["other"] == pytest.approx(16 / 80)
    assert sum(p.parts.values()) == pytest.approx(1.0)
    assert p.top[0] == ("fib_table_lookup", pytest.approx(30 / 80))
    assert "pv_native_safe_halt" not in dict(p.top)


@pytest.mark.parametrize(
    ("symbol", "part"),
    [
        ("bpf_prog_0123456789abcdef_xdp_reference", "program under test"),
        ("bpf_ipv6_fib_lookup", "FIB and neighbour lookup"),
        ("fib6_node_lookup_1", "FIB and neighbour lookup"),
        ("ip_route_use_hint", "FIB and neighbour lookup"),
        ("bpf_prog_0123456789abcdef_xdp_loop_b", "load source (loop hosts)"),
        ("bpf_prog_0123456789abcdef_xdp_inject", "load source (loop hosts)"),
        ("napi_complete_done", "veth and XDP redirect"),
        ("napi_skb_cache_get_bulk", "Linux stack (skbs)"),
        ("ip_forward", "Linux stack (skbs)"),
        ("_raw_spin_lock", "page pool (frames going back)"),
        ("read_tsc", "clock reads"),
        ("schedule", "other"),
    ],
)
def test_parts_by_symbol(symbol: str, part: str) -> None:
    assert profile.part_of(symbol) == part


@pytest.mark.skipif(not profile.available(), reason="perf (linux-perf) not installed")
def test_profiled_bench_shows_each_configurations_own_work() -> None:
    report = bench.run(frames=300_000, reps=1, table_routes=0, log=lambda s: None, profiled=True)
    assert set(report.profiles) == set(rig.CASES_64B)
    for case, by in report.profiles.items():
        assert set(by) == set(rig.CONFIGS), case
        for config, p in by.items():
            assert sum(p.parts.values()) == pytest.approx(1.0, abs=0.01), (case, config)
        assert by["xdprouter"].parts["program under test"] > 0
        assert by["xdprouter"].parts["FIB and neighbour lookup"] > 0
        assert by["linux"].parts["program under test"] == 0
        assert by["linux"].parts["Linux stack (skbs)"] > by["xdprouter"].parts["Linux stack (skbs)"]
    assert "where CPU 0's busy time goes" in bench.table(report)

"""Smoke test of the cluster benchmark (bench.cluster_bench) at toy sizes, so the bench code cannot
rot: planning with the job written to a private Redis, one worker sending split files, two
workers sending small files, every destination compared byte for byte, and the table."""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, REPO_ROOT)

from bench.cluster_bench import ClusterBenchConfig, plan_rate, render, run_bench  # noqa: E402


def test_planning_rate_without_redis_counts_files_and_tasks() -> None:
    out = plan_rate(1200)
    assert (out["files"], out["tasks"]) == (1200, 3)
    assert out["plan_files_per_s"] > 0 and "write_s" not in out


def test_the_whole_bench_at_toy_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = ClusterBenchConfig(plan_files=1000, rate="100m", range_mib=1, ranges=4, small_files=40,
                             workers=(1,), workdir=str(tmp_path), warmup_s=0)  # fmt: skip
    res = run_bench(cfg, log=lambda _line: None)
    assert (
        res.plan["tasks"] == 2
        and res.plan["write_tasks_per_s"] > 0
        and res.plan["redis_used_bytes"] > 0
    )
    assert set(res.scaling) == {1} and res.scaling[1] > 0
    assert res.small["files"] == 40 and res.small["files_per_s"] > 0
    table = render(cfg, res, "python -m bench.cluster_bench --toy")
    assert (
        "| 1 worker(s), each `-l 100m` |" in table
        and "1.00 x N" in table
        and "40 small files" in table
    )
    assert res.small_again["files"] == 40 and res.small_again["files_per_s"] > 0
    assert set(res.cpu) == {"1 worker(s), ranges", "2 workers, small files, first sync",
                            "2 workers, small files, next sync"}  # fmt: skip
    for use in res.cpu.values():  # every part did work, and the machine at least as much as they
        assert all(use.groups[g] > 0 for g in ("coordinator", "workers", "far end"))
        assert use.machine >= 0.9 * sum(use.groups.values()) and use.capacity > 0
    assert "| 2 workers, small files, next sync |" in table and "capacity (cores x wall)" in table
    assert not list(tmp_path.iterdir())  # the bench cleans up after itself


def test_cpu_meter_counts_a_busy_child_and_the_machine() -> None:
    import subprocess
    import sys as _sys

    from bench.cpu import CpuMeter

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    with CpuMeter({}, reaped="child") as meter:
        subprocess.run([_sys.executable, "-c", burn], check=True)
    use = meter.result
    assert 0.25 <= use.groups["child"] <= 1.0  # its own 0.3 s (plus start-up), nothing else's
    assert use.machine >= 0.25 and use.capacity >= use.wall > 0.25

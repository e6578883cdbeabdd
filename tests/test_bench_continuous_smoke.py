"""Smoke test of the continuous-sync benchmark (bench.continuous_bench) at small sizes, so the
bench code cannot rot: the latency stream arrives whole, the idle watcher is measured, and the
renamed directory is renamed at the far end (one status line, every inode kept)."""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, REPO_ROOT)

from bench.continuous_bench import SECTION, ContinuousBenchConfig, render, run_bench  # noqa: E402
from bench.shared import write_section  # noqa: E402


def test_continuous_bench_small(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = ContinuousBenchConfig(stream=30, rate=60, cooloff=0, idle_files=300, idle_seconds=1, rename_files=150,
                                rsync_interval=0.2, settle=0.2, workdir=str(tmp_path))  # fmt: skip
    report = run_bench(cfg)
    surge = report.latency["surge"]
    assert len(surge) == 30 and all(v < 60 for v in surge)  # every file arrived
    assert all(v < 60 for v in report.latency["rsync-loop"])
    cpu, rss = report.idle["surge"]
    assert 0 <= cpu < 1 and 0 < rss < 1000
    renamed = report.rename["surge"]
    assert renamed["lines"] == [("moved", "SYNCHRONIZED(mov)")]
    assert renamed["kept_inodes"] == renamed["files"] == 150
    assert report.rename["rsync"]["bytes"] == 150 * 1024  # rsync sends the renamed files again
    text = render(report)
    assert (
        "### Latency" in text and "### Idle" in text and "one rename, no data resent): met" in text
    )
    page = tmp_path / "BENCHMARKS.md"
    write_section(str(page), text, SECTION)
    assert page.read_text().count(SECTION) == 1

"""Smoke test of the sync benchmark (bench.sync_bench) on a small tree, so the bench code cannot
rot: every local step (initial sync, the three no-change re-syncs, the touched re-sync, the big
file) runs once with Surge and with rsync, and every destination must equal its source. The SSH
steps are left to the real benchmark run."""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, REPO_ROOT)

from bench.shared import write_section  # noqa: E402
from bench.sync_bench import (  # noqa: E402
    SECTION,
    SyncBenchConfig,
    TreeSpec,
    make_tree,
    render,
    run_bench,
    touch_files,
    trees_equal,
)

LOCAL_STEPS = {"rsync-initial", "surge-initial", "surge-edot-first", "surge-nochange", "surge-nochange-st2", "surge-nochange-anm",
               "surge-nochange-edot", "rsync-nochange", "rsync-touched", "surge-touched", "rsync-big",
               "surge-big", "floor-copy", "floor-walk"}  # fmt: skip


def test_tree_layout_is_three_levels_of_about_100_files():
    spec = TreeSpec.for_files(100_000, 100)
    assert (spec.fanout, spec.leaves) == (10, 1000)
    assert spec.path(0) == "d00/d00/d00/f000000.bin" and spec.path(1999) == "d09/d09/d09/f001999.bin"
    small = TreeSpec.for_files(300, 100)
    assert small.fanout == 2 and len({small.path(n) for n in range(300)}) == 300


def test_trees_equal_sees_a_changed_byte_and_a_missing_file(tmp_path):
    cfg = SyncBenchConfig(files=20, touched=5)
    spec = TreeSpec.for_files(20, 100)
    make_tree(str(tmp_path / "a"), spec, cfg)
    make_tree(str(tmp_path / "b"), spec, cfg)  # same seed: same tree
    (tmp_path / "b" / ".surge").mkdir()  # the snapshot folder does not count
    (tmp_path / "b" / ".surge" / "x.db").write_bytes(b"x")
    assert trees_equal(str(tmp_path / "a"), str(tmp_path / "b"), 30) == (True, "")
    touched = touch_files(str(tmp_path / "a"), spec, 5)
    assert len(touched) == 5
    ok, why = trees_equal(str(tmp_path / "a"), str(tmp_path / "b"), 30)
    assert not ok and why.startswith("5 difference(s)")
    make_tree(str(tmp_path / "c"), spec, cfg)
    os.unlink(tmp_path / "c" / spec.path(3))
    assert not trees_equal(str(tmp_path / "b"), str(tmp_path / "c"), 30)[0]


def test_bench_runs_every_local_step_and_the_trees_match(tmp_path):
    # A generous per-command limit: the smoke test checks results, not speed.
    cfg = SyncBenchConfig(files=300, big=4 << 20, workdir=str(tmp_path), repeats=1, remote=False, timeout=120)
    report = run_bench(cfg, command="python -m bench.sync_bench --files 300 --big 4M --no-remote",
                       log=lambda _line: None)  # fmt: skip
    assert set(report.steps) == LOCAL_STEPS
    for step in report.steps.values():
        assert step.ok, (step.key, step.status, step.detail)  # includes the diff/cmp and count checks
        assert len(step.seconds) == 1 and step.seconds[0] > 0
    assert report.steps["surge-initial"].counts == "314 SYNCHRONIZED"  # 300 files, 2+4+8 directories
    assert report.steps["surge-edot-first"].counts == "300 SYNCHRONIZED(exs)"
    assert report.steps["surge-touched"].counts == "100 SYNCHRONIZED"
    assert report.steps["surge-big"].counts == "1 SYNCHRONIZED"
    assert report.ok
    text = render(report)
    for row in ("| Initial sync of the tree, local → local |", "| No-change re-sync, `--assume-no-mods` |",
                "| One 4.00 MiB file, local → local |", "| Floor: bare Python stat walk, no records (not Surge) |"):  # fmt: skip
        assert row in text
    assert "loopback SSH" not in text  # not run, not shown
    assert os.listdir(tmp_path / "surge-bench-sync") == []  # the trees are removed
    doc = tmp_path / "BENCHMARKS.md"
    write_section(str(doc), text, SECTION)
    assert doc.read_text().count(SECTION) == 1

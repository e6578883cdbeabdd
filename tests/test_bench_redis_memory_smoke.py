"""Smoke test of bench/redis_memory.py on 2,000 files per case, so the bench cannot rot, and the
memory target of issue #5 holds: at most 300 bytes of Redis memory per tracked file."""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, REPO_ROOT)

from bench.redis_memory import CASES, SECTION, main, make_entries, measure, render  # noqa: E402


def test_paths_are_three_levels_and_unique() -> None:
    short, _, long = CASES
    paths = [e.path for e in make_entries(2_000, short)]
    assert paths[0] == "d000/d000/f00000.bin" and paths[1_999] == "d000/d019/f00099.bin"
    assert len(set(paths)) == 2_000 and all(p.count("/") == 2 for p in paths)
    assert all(e.checksum is None for e in make_entries(10, short))
    assert all(len(e.path) > 64 and len(e.checksum or "") == 40 for e in make_entries(10, long))


def test_memory_per_file_meets_the_target_and_the_table_renders() -> None:
    results = [measure(case, 2_000, 500) for case in CASES]
    for r in results:
        assert 10 < r.redis_bytes <= 300, (r.case.name, r.redis_bytes)
        assert 10 < r.redis_store_bytes <= 300 and r.sqlite_bytes > 10
        assert all(rate > 0 for rate in r.rates.values()) and len(r.rates) == 8
    # Checksums cost memory; the SHA-1 is stored as 20 bytes, not as 40 hex characters.
    no_sum, sha1, _ = results
    assert 15 <= sha1.redis_bytes - no_sum.redis_bytes <= 40
    table = render(results, "python -m bench.redis_memory --files 2000")
    assert table.count("meets the 300-byte target") == 3 and "| 3-level paths, SHA-1" in table


def test_main_writes_its_section(tmp_path, capsys) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    assert main(["--files", "300", "--batch", "100", "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Other\n\nkept" in text and SECTION in text and "(N=300)" in text
    assert "bytes/file" in capsys.readouterr().out

"""Smoke test of the loopback benchmark (bench.loopback, bench.rawudp) on a tiny file, so the
bench code cannot rot: every Surge case and every raw-UDP case runs once and must deliver the
file intact; scp/rsync (which need an sshd) are left to the real benchmark run."""

from __future__ import annotations

import json
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, REPO_ROOT)

from bench.loopback import (  # noqa: E402
    SECTION,
    BenchConfig,
    Case,
    cases,
    from_json,
    render,
    run_bench,
    to_json,
    write_section,
)
from bench.rawudp import RawConfig, run_raw  # noqa: E402

SIZE = 8 << 20


def test_raw_baseline_delivers_intact(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(SIZE + 12345))  # not a multiple of any chunk size
    for payload in (65507, 8972):
        for cipher in ("none", "aes128gcm"):
            dst = tmp_path / f"dst-{payload}-{cipher}.bin"
            r = run_raw(str(src), str(dst), SIZE + 12345, RawConfig(payload, cipher), timeout=30)
            assert r.ok, (payload, cipher, r)
            assert dst.read_bytes() == src.read_bytes()


def test_bench_runs_surge_and_raw_on_a_tiny_file(tmp_path):
    cfg = BenchConfig(size=SIZE, runs=1, workdir=str(tmp_path), timeout=60, tools=("surge", "raw"))
    report = run_bench(cfg, command="python -m bench.loopback --size 8M", log=lambda _line: None)
    assert [m.case for m in report.measurements] == cases(("surge", "raw"))
    assert len(report.measurements) == 8
    for m in report.measurements:
        assert m.ok, (m.case, m.status, m.detail)
        assert m.bytes_received == SIZE and m.wall and m.data
    surge_default = next(
        m for m in report.measurements if m.case == Case("surge", "aes128gcm", 65507)
    )
    assert surge_default.rss and surge_default.rss > 0
    text = render(report)
    assert "Surge default cipher / raw UDP + AES-128-GCM, 8972-byte payload" in text
    assert "Receiving agent peak RSS" in text
    assert render(from_json(json.loads(json.dumps(to_json(report))))) == text
    assert any(
        p.startswith("source-") for p in os.listdir(tmp_path / "surge-bench-loopback")
    )  # kept
    assert [p for p in os.listdir(tmp_path / "surge-bench-loopback") if p.startswith("dst-")] == []


def test_write_section_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    write_section(str(doc), "first\n")
    assert doc.read_text() == f"# Benchmarks\n\n{SECTION}\n\nfirst\n"
    doc.write_text(doc.read_text() + "\n## Other section\n\nkeep me\n")
    write_section(str(doc), "second\n")
    text = doc.read_text()
    assert "first" not in text and "second" in text
    assert text.endswith("## Other section\n\nkeep me\n")
    assert text.count(SECTION) == 1

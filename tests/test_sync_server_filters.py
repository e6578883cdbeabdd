"""The far end's own filter rules (aspera.conf's `filters`, here the server configuration's) in
`surge sync`: the reference applies them to async sessions too, before the command line's. What
they exclude is invisible to the pair: not sent, not pulled, not deleted by --mirror, not
reported; a pair records them at each meeting, so a re-sync with nothing to send still needs no
connection. Real `surge server` and system sshd, SSH and UDP on loopback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import FarEnd, free_udp_port, surge_server, system_sshd

from common.snapshot import SqliteSnapshot, default_snapshot_path
from coordinator.sync.engine import SyncError, run_sync
from coordinator.sync.options import parse_sync_args
from coordinator.sync.session import far_rules_of

SERVER_RULES = '[defaults]\nfilters = ["- *.tmp", "- cache/"]\n'


@pytest.fixture(params=["server", "sshd"])
def far(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FarEnd]:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    config = tmp_path / "surge.toml"
    config.write_text(SERVER_RULES)
    starter = surge_server if request.param == "server" else system_sshd
    with starter(tmp_path / request.param, docroot=docroot, config=config) as end:
        yield end


def sync(far: FarEnd, local: Path, *args: str, name: str = "pair") -> object:
    opts = parse_sync_args(["-N", name, "-d", str(local), "-r", far.remote("/dst"), *far.auth(),
                            "-O", str(free_udp_port()), "-l", "1g", "--create-dir", *args])  # fmt: skip
    return run_sync(opts)


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".surge" not in p.parts}


def test_a_push_neither_sends_nor_reports_what_the_server_excludes(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "b.tmp").write_text("b")
    (src / "cache" / "c.txt").write_text("c")
    report = sync(far, src)
    assert report.ok, report.errors  # type: ignore[attr-defined]
    assert dict(report.lines) == {"a.txt": "SYNCHRONIZED"}  # type: ignore[attr-defined]
    assert files(far.docroot / "dst") == {"a.txt"}
    # The rules were recorded: the re-sync sees nothing to do (before, b.tmp came back every run).
    assert sync(far, src).lines == []  # type: ignore[attr-defined]


def test_the_servers_rules_come_before_the_command_lines(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.tmp").write_text("k")
    (src / "a.txt").write_text("a")
    report = sync(far, src, "--include", "keep.tmp")
    assert report.ok, report.errors  # type: ignore[attr-defined]
    assert files(far.docroot / "dst") == {"a.txt"}


def test_mirror_leaves_what_the_server_excludes_alone(far: FarEnd, tmp_path: Path) -> None:
    """Before the listing hid them, --mirror deleted the server's excluded files as extras."""
    assert far.docroot is not None
    (far.docroot / "dst" / "cache").mkdir(parents=True)
    (far.docroot / "dst" / "r.tmp").write_text("the server's own")
    (far.docroot / "dst" / "cache" / "x").write_text("cached")
    (far.docroot / "dst" / "extra.txt").write_text("extra")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    report = sync(far, src, "--mirror")
    assert report.ok, report.errors  # type: ignore[attr-defined]
    assert dict(report.lines) == {"a.txt": "SYNCHRONIZED", "extra.txt": "SYNCHRONIZED(del)"}  # type: ignore[attr-defined]
    assert files(far.docroot / "dst") == {"a.txt", "r.tmp", "cache/x"}


def test_a_pull_and_a_bidi_never_bring_what_the_server_excludes(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    (far.docroot / "dst" / "cache").mkdir(parents=True)
    (far.docroot / "dst" / "r.tmp").write_text("hidden")
    (far.docroot / "dst" / "cache" / "x").write_text("hidden")
    (far.docroot / "dst" / "shared.txt").write_text("shared")
    for direction in ("pull", "bidi"):
        here = tmp_path / direction
        here.mkdir()
        report = sync(far, here, "-K", direction, name=direction)
        assert report.ok, report.errors  # type: ignore[attr-defined]
        assert dict(report.lines) == {"shared.txt": "SYNCHRONIZED"}, direction  # type: ignore[attr-defined]
        assert files(here) == {"shared.txt"}


def test_the_pair_records_the_rules_the_far_end_named(far: FarEnd, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    assert sync(far, src).ok  # type: ignore[attr-defined]
    with SqliteSnapshot(default_snapshot_path(str(src), "pair")) as snap:
        assert snap.get_meta("far_filters") == '[["exclude", "*.tmp"], ["exclude", "cache/"]]'


def test_the_far_ends_rules_are_checked() -> None:
    assert far_rules_of({}) == [] and far_rules_of({"filters": None}) == []
    assert far_rules_of({"filters": [["include", "a"], ["exclude", "*.b"]]}) == [("include", "a"), ("exclude", "*.b")]
    for bad in ([["drop", "x"]], ["x"], [["exclude"]], 7):
        with pytest.raises(SyncError, match="malformed filter rules"):
            far_rules_of({"filters": bad})

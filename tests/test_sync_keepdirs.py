"""--keep-dir-local / --keep-dir-remote keep every deleted version: a second deletion of a name
already kept goes beside the first under the --save-before-overwrite name
(name.yyyy.mm.dd.hh.mm.ss.index.ext) instead of replacing it (before, the first kept copy was
lost, and a kept directory whose name was taken failed). Local pairs and a `surge server`, whose
agent also makes the kept file's directories."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sync import free_udp_port, sync, write

sys.path.insert(0, os.path.dirname(__file__))
from sshd import FarEnd, surge_server

from common.paths import free_name
from coordinator.sync.engine import SyncReport, run_sync
from coordinator.sync.options import parse_sync_args

STAMPED = re.compile(r"^f\.\d{4}(\.\d\d){5}\.1\.txt$")


def kept(keep: Path) -> dict[str, str]:
    return {str(p.relative_to(keep)): p.read_text() for p in keep.rglob("*") if p.is_file()}


def test_free_name_is_the_name_itself_or_a_stamped_free_one(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    assert free_name(str(target)) == str(target)
    target.write_text("x")
    first = free_name(str(target))
    assert STAMPED.match(os.path.basename(first))
    Path(first).write_text("y")
    assert free_name(str(target)) not in (str(target), first)


def test_a_second_deletion_of_a_kept_name_keeps_both_versions(tmp_path: Path) -> None:
    src, dst, keep = tmp_path / "src", tmp_path / "dst", tmp_path / "attic"
    keep.mkdir()
    dst.mkdir()
    write(src, {"d/f.txt": "one", "g": "g"})
    assert sync(src, dst).ok
    for version in ("two", None):
        (src / "d" / "f.txt").unlink()
        assert sync(src, dst, "--keep-dir-remote", str(keep)).ok
        if version is not None:
            write(src, {"d/f.txt": version})
            assert sync(src, dst).ok
    got = kept(keep)
    assert got.pop("d/f.txt") == "one"
    ((name, text),) = got.items()
    assert STAMPED.match(os.path.basename(name)) and text == "two"


def test_a_kept_directory_whose_name_is_taken_goes_beside_it(tmp_path: Path) -> None:
    src, dst, keep = tmp_path / "src", tmp_path / "dst", tmp_path / "attic"
    write(keep, {"d/old": "kept before"})
    write(src, {"d/x": "x"})
    dst.mkdir()
    assert sync(src, dst).ok
    (src / "d" / "x").unlink()
    (src / "d").rmdir()
    report = sync(src, dst, "--keep-dir-remote", str(keep))
    assert report.ok, report.errors
    assert kept(keep)["d/old"] == "kept before"
    assert sorted(v for k, v in kept(keep).items() if k != "d/old") == ["x"]


@pytest.fixture
def far(tmp_path: Path) -> Iterator[FarEnd]:
    docroot = tmp_path / "docroot"
    (docroot / "attic").mkdir(parents=True)
    with surge_server(tmp_path / "server", docroot=docroot) as end:
        yield end


def test_keep_dir_remote_at_a_server_makes_directories_and_keeps_versions(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    src = tmp_path / "src"
    write(src, {"a/b/f.txt": "one"})

    def run(*extra: str) -> SyncReport:
        return run_sync(parse_sync_args(["-N", "k", "-d", str(src), "-r", far.remote("/dst"), *far.auth(),
                                         "-O", str(free_udp_port()), "-l", "1g", "--create-dir", *extra]))  # fmt: skip

    assert run().ok
    (src / "a" / "b" / "f.txt").unlink()
    report = run("--keep-dir-remote", "/attic")
    assert report.ok, report.errors
    write(src, {"a/b/f.txt": "two"})
    assert run().ok
    (src / "a" / "b" / "f.txt").unlink()
    assert run("--keep-dir-remote", "/attic").ok
    got = kept(far.docroot / "attic")
    assert got.pop("a/b/f.txt") == "one"
    ((name, text),) = got.items()
    assert STAMPED.match(os.path.basename(name)) and text == "two"

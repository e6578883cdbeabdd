"""Permissions: async synchronizes them unless --ignore-mode ("Do not synchronize file
permissions of the source to the destination"): new files and directories get their source's
mode, and a change of mode alone is an attribute update (SYNCHRONIZED(mov))."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from test_sync import statuses, sync, write


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"d/f": "f", "x": "x"})
    os.chmod(src / "d" / "f", 0o640)
    os.chmod(src / "x", 0o755)
    os.chmod(src / "d", 0o750)
    dst.mkdir()
    return src, dst


def test_new_files_and_directories_get_their_source_mode(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    assert sync(src, dst).ok
    assert (mode(dst / "d"), mode(dst / "d" / "f"), mode(dst / "x")) == (0o750, 0o640, 0o755)


def test_a_change_of_mode_alone_is_an_attribute_update(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    assert sync(src, dst).ok
    os.chmod(src / "x", 0o700)
    os.chmod(src / "d", 0o755)
    report = sync(src, dst)
    assert statuses(report) == {"d": "SYNCHRONIZED(mov)", "x": "SYNCHRONIZED(mov)"}
    assert (mode(dst / "d"), mode(dst / "x")) == (0o755, 0o700)
    assert statuses(sync(src, dst)) == {}  # recorded: nothing left to do


def test_ignore_mode_leaves_permissions_alone(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    assert sync(src, dst, "--ignore-mode").ok
    umask = os.umask(0)
    os.umask(umask)
    assert mode(dst / "x") == 0o666 & ~umask and mode(dst / "d") == 0o777 & ~umask
    os.chmod(src / "x", 0o700)
    assert statuses(sync(src, dst, "--ignore-mode")) == {}
    assert mode(dst / "x") == 0o666 & ~umask


def test_pull_and_bidi_carry_modes_the_other_way(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    assert sync(dst, src, "-K", "pull").ok  # dst is the local side here
    assert mode(dst / "x") == 0o755
    assert sync(dst, src, "-K", "bidi").ok
    os.chmod(src / "x", 0o711)  # changed on the remote side only
    report = sync(dst, src, "-K", "bidi")
    assert statuses(report) == {"x": "SYNCHRONIZED(mov)"} and mode(dst / "x") == 0o711


def test_an_identical_file_already_at_the_target_gets_the_source_mode(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(dst, {"x": "x"})
    os.chmod(dst / "x", 0o600)
    report = sync(src, dst)
    assert statuses(report)["x"] == "SYNCHRONIZED(exs)" and mode(dst / "x") == 0o755


def test_a_directory_its_owner_cannot_write_still_receives_its_files(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    os.chmod(src / "d", 0o500)
    try:
        assert sync(src, dst).ok
        assert (dst / "d" / "f").read_text() == "f" and mode(dst / "d") == 0o500
    finally:
        os.chmod(src / "d", 0o700)
        if (dst / "d").exists():
            os.chmod(dst / "d", 0o700)

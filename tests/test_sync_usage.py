"""Bad input that `surge sync` can only see on the file system (a missing directory, a keep
directory inside the tree, a pair run with other settings than before): a usage error, one line
naming the option, exit status 2, nothing changed on either side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_sync import free_udp_port, listing, write


def surge_sync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", "sync", *args, "-O", str(free_udp_port())],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def usage_error(res: subprocess.CompletedProcess[str], option: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"surge sync: error: {option}: "), lines


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"a": "a", "d/b": "b"})
    dst.mkdir()
    return src, dst


def test_a_missing_directory_without_create_dir(pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = pair
    usage_error(surge_sync("-N", "p", "-d", str(src), "-r", str(tmp_path / "nope")), "-r")
    usage_error(surge_sync("-N", "p", "-d", str(tmp_path / "none"), "-r", str(src)), "-d")
    usage_error(surge_sync("-N", "p", "-d", str(tmp_path / "none"), "-r", str(src), "-C"), "-d")
    assert not (tmp_path / "nope").exists() and not (tmp_path / "none").exists()


def test_a_remote_directory_inside_the_local_one(pair: tuple[Path, Path]) -> None:
    src, _ = pair
    usage_error(surge_sync("-N", "p", "-d", str(src), "-r", str(src / "d")), "-r")
    assert listing(src) == {"a": b"a", "d": None, "d/b": b"b"}


def test_a_keep_directory_inside_the_tree_must_be_excluded(pair: tuple[Path, Path]) -> None:
    src, dst = pair
    assert surge_sync("-N", "p", "-d", str(src), "-r", str(dst)).returncode == 0
    (dst / "trash").mkdir()
    (src / "a").unlink()
    usage_error(surge_sync("-N", "p", "-d", str(src), "-r", str(dst), "--keep-dir-remote", str(dst / "trash")),
                "--keep-dir-remote")  # fmt: skip
    assert (dst / "a").read_text() == "a"  # nothing deleted
    res = surge_sync("-N", "p", "-d", str(src), "-r", str(dst), "--keep-dir-remote", str(dst / "trash"),
                     "--exclude", "/trash/")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert not (dst / "a").exists() and (dst / "trash" / "a").read_text() == "a"


def test_a_keep_directory_on_another_file_system(pair: tuple[Path, Path]) -> None:
    src, dst = pair
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == src.stat().st_dev:
        pytest.skip("no second file system here")
    usage_error(surge_sync("-N", "p", "-d", str(src), "-r", str(dst), "--keep-dir-local", str(other)),
                "--keep-dir-local")  # fmt: skip


def test_a_pair_run_against_another_remote_directory(pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, dst = pair
    assert surge_sync("-N", "p", "-d", str(src), "-r", str(dst)).returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    usage_error(surge_sync("-N", "p", "-d", str(src), "-r", str(other)), "-r")
    assert os.listdir(other) == []


def test_exclude_dirs_older_than_must_match_the_first_run(pair: tuple[Path, Path]) -> None:
    src, dst = pair
    assert surge_sync("-N", "p", "-d", str(src), "-r", str(dst)).returncode == 0
    usage_error(surge_sync("-N", "p", "-d", str(src), "-r", str(dst), "--exclude-dirs-older-than=24:00:00"),
                "--exclude-dirs-older-than")  # fmt: skip


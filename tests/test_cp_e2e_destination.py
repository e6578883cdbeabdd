"""`surge cp` end to end, ascp options acting on the destination: symbolic links, owners,
deletions before transfer, source prefixes and preserved directory times."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cp_e2e_helpers import cp, make_tree, same_tree

# -- ascp options acting on the destination: links, owners, deletions, prefixes ----------------


def link_tree(root: Path) -> Path:
    """f, d/in, and the links lf -> f, ld -> d, up -> .. (a loop through a link)."""
    src = root / "src"
    (src / "d").mkdir(parents=True)
    (src / "f").write_text("file\n")
    (src / "d" / "in").write_text("inside\n")
    (src / "lf").symlink_to("f")
    (src / "ld").symlink_to("d", target_is_directory=True)
    (src / "d" / "up").symlink_to("..", target_is_directory=True)
    return src


def entries(root: Path) -> dict[str, str]:
    """relative path -> 'dir', 'link -> TARGET' or the file's text (links not followed)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = f"link -> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else p.read_text()
    return out


def test_symbolic_links_follow_by_default_and_a_loop_is_not_followed(tmp_path: Path) -> None:
    src = link_tree(tmp_path)
    res = cp(str(src), str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert entries(tmp_path / "out") == {"d": "dir", "d/in": "inside\n", "f": "file\n", "ld": "dir",
                                         "ld/in": "inside\n", "lf": "file\n"}  # fmt: skip


def test_symbolic_links_skip_leaves_links_out(tmp_path: Path) -> None:
    src = link_tree(tmp_path)
    res = cp("--symbolic-links=skip", str(src), str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert entries(tmp_path / "out") == {"d": "dir", "d/in": "inside\n", "f": "file\n"}


def test_symbolic_links_copy_makes_links_with_the_same_target(tmp_path: Path) -> None:
    src = link_tree(tmp_path)
    res = cp("--symbolic-links=copy", str(src), str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert entries(tmp_path / "out") == {"d": "dir", "d/in": "inside\n", "d/up": "link -> ..", "f": "file\n",
                                         "ld": "link -> d", "lf": "link -> f"}  # fmt: skip
    one = tmp_path / "one"
    assert cp("--symbolic-links=copy", str(src / "lf"), str(one)).returncode == 0
    assert os.readlink(one) == "f"


def test_symbolic_links_copy_keeps_what_exists_and_copy_force_replaces_it(tmp_path: Path) -> None:
    src = link_tree(tmp_path)
    out = tmp_path / "out"
    (out / "src" / "ld").mkdir(parents=True)
    (out / "src" / "lf").write_text("an older file\n")
    assert cp("--symbolic-links=copy", str(src), str(out)).returncode == 0
    assert (out / "src" / "lf").read_text() == "an older file\n" and not (out / "src" / "lf").is_symlink()
    assert cp("--symbolic-links=copy+force", str(src), str(out)).returncode == 0
    assert os.readlink(out / "src" / "lf") == "f"
    assert (out / "src" / "ld").is_dir() and not (out / "src" / "ld").is_symlink()  # a directory stays


def test_delete_before_transfer_deletes_only_what_the_source_lacks(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    out = tmp_path / "out"
    (out / "src" / "gone" / "deep").mkdir(parents=True)
    (out / "src" / "gone" / "deep" / "x").write_text("x")
    (out / "src" / "stale.txt").write_text("stale")
    (out / "src" / "sub" / "old.dat").parent.mkdir(parents=True)
    (out / "src" / "sub" / "old.dat").write_text("old")
    (out / "src" / "keep.tmp").write_text("excluded: left alone")
    (out / "beside").write_text("outside the source's directory")
    res = cp("--delete-before-transfer", "-E", "*.tmp", str(src), str(out))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (out / "src").iterdir()) == ["big.bin", "empty", "emptydir", "keep.tmp", "one",
                                                               "sub"]  # fmt: skip
    assert not (out / "src" / "sub" / "old.dat").exists()
    assert (out / "beside").exists()
    (out / "src" / "keep.tmp").unlink()
    assert same_tree(src, out / "src")  # the rest is an exact copy


def test_delete_before_transfer_needs_a_source_directory(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    res = cp("--delete-before-transfer", str(f), str(tmp_path / "out"))
    assert res.returncode == 1
    assert res.stderr.strip() == "surge cp: error: --delete-before-transfer: the source must be a directory"


@pytest.mark.skipif(os.geteuid() != 0, reason="setting another owner needs root")
def test_preserve_file_owner_uid_and_gid(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    os.chown(src / "one", 1234, 2345)
    res = cp("--preserve-file-owner-uid", str(src), str(tmp_path / "uid"))
    assert res.returncode == 0, res.stderr
    st = (tmp_path / "uid" / "one").stat()
    assert (st.st_uid, st.st_gid) == (1234, os.getegid())
    res = cp("--preserve-file-owner-uid", "--preserve-file-owner-gid", str(src), str(tmp_path / "both"))
    assert res.returncode == 0, res.stderr
    st = (tmp_path / "both" / "one").stat()
    assert (st.st_uid, st.st_gid) == (1234, 2345)
    assert cp(str(src), str(tmp_path / "plain")).returncode == 0
    assert (tmp_path / "plain" / "one").stat().st_uid == os.geteuid()  # without the options: the writer's


def test_source_prefix_applies_to_file_list_entries(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text("one\nsub\n")
    out = tmp_path / "out"
    out.mkdir()
    res = cp(f"--source-prefix={src}", f"--file-list={listing}", str(out))
    assert res.returncode == 0, res.stderr
    assert (out / "one").read_bytes() == b"x" and (out / "sub" / "a.txt").read_text() == "alpha\n"


@pytest.mark.parametrize("flag", ["--preserve-modification-time", "-p"])
def test_preserving_times_covers_directories(tmp_path: Path, flag: str) -> None:
    """The reference: the modification time "of a transferred file or directory"."""
    src = make_tree(tmp_path)
    old = 1_500_000_000
    for path in [src / "sub" / "deeper", src / "sub", src / "emptydir", src]:
        os.utime(path, (old, old))
    res = cp(flag, str(src), str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    for rel in ("", "sub", "sub/deeper", "emptydir"):
        assert (out / rel).stat().st_mtime == old, rel
    res = cp(str(src), str(tmp_path / "plain"))
    assert (tmp_path / "plain" / "sub").stat().st_mtime != old  # without the option: written now

"""`surge cp` end to end, transfers: real processes, real UDP on 127.0.0.1, files in and files out —
ciphers, datagram sizes, targets, filters, overwrite policies, times, checksums, manifests,
removal after transfer and faux sources."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cp_e2e_helpers import cp, make_tree, same_tree


@pytest.mark.parametrize("cipher", ["aes128", "aes256cfb", "none"])
def test_directory_copied_byte_for_byte(tmp_path: Path, cipher: str) -> None:
    src = make_tree(tmp_path)
    dst = tmp_path / "dst"
    res = cp("-l", "1g", "-c", cipher, str(src), str(dst))
    assert res.returncode == 0, res.stderr
    assert same_tree(src, dst)
    assert "Completed: 5 file(s) transferred" in res.stderr
    assert not list(dst.rglob("*.partial")) and not list(dst.rglob("*.aspx"))


def test_small_datagrams_many_files(tmp_path: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for i in range(300):
        (src / f"f{i:03}").write_bytes(os.urandom(i * 37))
    dst = tmp_path / "out"
    dst.mkdir()
    res = cp("-l", "500m", "-Z", "1500", str(src), str(dst))
    assert res.returncode == 0, res.stderr
    assert same_tree(src, dst / "many")


def test_single_file_to_new_name_and_into_directory(tmp_path: Path) -> None:
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(100_000))
    assert cp("-l", "1g", str(f), str(tmp_path / "renamed.bin")).returncode == 0
    assert (tmp_path / "renamed.bin").read_bytes() == f.read_bytes()
    d = tmp_path / "box"
    d.mkdir()
    assert cp("-l", "1g", str(f), str(d)).returncode == 0
    assert (d / "data.bin").read_bytes() == f.read_bytes()


def test_a_destination_that_is_a_symbolic_link_is_written_to_its_target(tmp_path: Path) -> None:
    """The reference: "If the destination is a symbolic link, then the file or directory is
    written to the target of the symbolic link" (a link to a file as much as to a directory)."""
    f = tmp_path / "data.bin"
    f.write_bytes(b"new")
    (tmp_path / "real.bin").write_bytes(b"old")
    (tmp_path / "link.bin").symlink_to("real.bin")
    res = cp(str(f), str(tmp_path / "link.bin"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "link.bin").is_symlink() and (tmp_path / "real.bin").read_bytes() == b"new"
    (tmp_path / "box").mkdir()
    (tmp_path / "boxlink").symlink_to("box", target_is_directory=True)
    assert cp(str(f), str(tmp_path / "boxlink")).returncode == 0
    assert (tmp_path / "boxlink").is_symlink() and (tmp_path / "box" / "data.bin").read_bytes() == b"new"


def test_several_sources_need_an_existing_directory_or_d(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    dest = tmp_path / "new" / "dir"
    res = cp(str(a), str(b), str(dest))
    assert res.returncode == 1
    assert "does not exist" in res.stderr and "-d" in res.stderr
    assert not dest.exists()
    res = cp("-d", str(a), str(b), str(dest))
    assert res.returncode == 0, res.stderr
    assert (dest / "a").read_text() == "a" and (dest / "b").read_text() == "b"


def test_exclude_and_include_filters(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "logs").mkdir(parents=True)
    (src / "keep.txt").write_text("k")
    (src / "junk.tmp").write_text("j")
    (src / "logs" / "x.log").write_text("l")
    (src / "important.tmp").write_text("i")
    dst = tmp_path / "dst"
    res = cp("-N", "important.tmp", "-E", "*.tmp", "-E", "logs/", str(src), str(dst))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in dst.rglob("*") if p.is_file()) == ["important.tmp", "keep.txt"]


def test_overwrite_policies(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("new content")
    out = tmp_path / "out"
    out.mkdir()
    (out / "f.txt").write_text("old")
    assert cp("--overwrite", "never", str(f), str(out)).returncode == 0
    assert (out / "f.txt").read_text() == "old"
    assert cp(str(f), str(out)).returncode == 0  # default diff with -k 0: always different
    assert (out / "f.txt").read_text() == "new content"
    # -k 1: same size means same file, so a same-size different file is skipped
    (out / "f.txt").write_text("NEW CONTENT")
    res = cp("-k", "1", str(f), str(out))
    assert res.returncode == 0 and "1 skipped" in res.stderr
    assert (out / "f.txt").read_text() == "NEW CONTENT"
    # -k 3: full checksums compared: different content is sent
    assert cp("-k", "3", str(f), str(out)).returncode == 0
    assert (out / "f.txt").read_text() == "new content"
    res = cp("-k", "3", str(f), str(out))
    assert "1 skipped" in res.stderr


def test_save_before_overwrite_keeps_old_copy(tmp_path: Path) -> None:
    f = tmp_path / "doc.txt"
    f.write_text("v2")
    out = tmp_path / "out"
    out.mkdir()
    (out / "doc.txt").write_text("v1")
    assert cp("--save-before-overwrite", str(f), str(out)).returncode == 0
    saved = [p for p in out.iterdir() if p.name != "doc.txt"]
    assert (out / "doc.txt").read_text() == "v2"
    assert len(saved) == 1 and saved[0].read_text() == "v1" and saved[0].suffix == ".txt"


def test_preserve_times_checksum_and_manifest(tmp_path: Path) -> None:
    f = tmp_path / "t.bin"
    f.write_bytes(b"hello world")
    os.utime(f, (1_000_000_000, 1_100_000_000))
    out = tmp_path / "out"
    out.mkdir()
    man = tmp_path / "manifest"
    res = cp("-p", "--file-checksum", "sha-256", "--file-manifest", "text", "--file-manifest-path", str(man),
             "-D", str(f), str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    st = os.stat(out / "t.bin")
    assert st.st_mtime == 1_100_000_000 and st.st_atime == 1_000_000_000
    assert "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9" in res.stderr
    [manifest] = list(man.iterdir())
    assert manifest.read_text().strip() == str(f)


def test_remove_and_move_after_transfer(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    assert cp("--remove-after-transfer", "--remove-empty-directories", str(src), str(out)).returncode == 0
    assert (out / "src" / "d" / "x").read_text() == "x"
    assert src.exists() and not (src / "d").exists()  # source argument itself is kept
    src2 = tmp_path / "src2"
    src2.mkdir()
    (src2 / "y").write_text("y")
    archive = tmp_path / "archive"
    assert cp("--move-after-transfer", str(archive), str(src2), str(out)).returncode == 0
    assert (archive / "src2" / "y").read_text() == "y" and not (src2 / "y").exists()


def test_remove_empty_directories_scans_from_the_source_base(tmp_path: Path) -> None:
    """With --src-base, emptied directories are removed from the base down (the base and the
    source arguments stay, unless --remove-empty-source-directory); the paths below the base
    are kept at the destination."""
    for extra, left in (([], ["c"]), (["--remove-empty-source-directory"], [])):
        base = tmp_path / "base"
        (base / "a" / "b").mkdir(parents=True)
        (base / "c").mkdir()
        (base / "a" / "b" / "f").write_text("f")
        (base / "c" / "g").write_text("g")
        out = tmp_path / "out"
        out.mkdir()
        res = cp(f"--src-base={base}", "--remove-after-transfer", "--remove-empty-directories", *extra,
                 str(base / "a" / "b" / "f"), str(base / "c"), str(out))  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert (out / "a" / "b" / "f").read_text() == "f" and (out / "c" / "g").read_text() == "g"
        assert sorted(p.name for p in base.iterdir()) == left
        shutil.rmtree(base)
        shutil.rmtree(out)


def test_remove_empty_source_directory_removes_the_source_not_its_parent(tmp_path: Path) -> None:
    """--remove-empty-source-directory removes the source argument; the directory that holds it
    is no source and stays (only a file argument's parent is scanned)."""
    parent = tmp_path / "parent"
    (parent / "src" / "d").mkdir(parents=True)
    (parent / "src" / "d" / "x").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    res = cp("--remove-after-transfer", "--remove-empty-directories", "--remove-empty-source-directory",
             str(parent / "src"), str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (out / "src" / "d" / "x").read_text() == "x"
    assert parent.is_dir() and not (parent / "src").exists()


def test_faux_source_to_faux_destination(tmp_path: Path) -> None:
    res = cp("-l", "2g", "faux:///gen?20m", "faux://")
    assert res.returncode == 0, res.stderr
    assert "20.0 MiB" in res.stderr


def test_faux_source_written_to_disk(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert cp("-l", "1g", "faux:///zeros?1m", str(out)).returncode == 0
    assert (out / "zeros").read_bytes() == bytes(1 << 20)

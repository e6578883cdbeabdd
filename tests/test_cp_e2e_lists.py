"""`surge cp` end to end with --file-list and --file-pair-list, as the reference's examples:
the listed items land in the destination without their paths, or under their paired names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from cp_e2e_helpers import cp, make_tree, same_tree


def test_file_list_transfers_the_listed_sources_without_their_paths(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{src / 'one'}\n{src / 'sub'}\n")
    out = tmp_path / "out"
    out.mkdir()
    res = cp(f"--file-list={listing}", str(out))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["one", "sub"]
    assert (out / "one").read_bytes() == b"x" and same_tree(src / "sub", out / "sub")


def test_file_list_from_standard_input(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    res = subprocess.run([sys.executable, "-m", "coordinator.cli", "cp", "--file-list=-", str(out)],
                         input=f"{src / 'one'}\n", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (out / "one").read_bytes() == b"x"


def test_file_pair_list_sends_each_source_to_its_destination(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{src / 'one'}\nrenamed/one.txt\n{src / 'sub'}\n/Dir2\n")
    out = tmp_path / "out"
    out.mkdir()
    res = cp(f"--file-pair-list={pairs}", str(out))
    assert res.returncode == 0, res.stderr
    assert (out / "renamed" / "one.txt").read_bytes() == b"x"
    assert same_tree(src / "sub", out / "Dir2")


def test_a_file_list_with_a_byte_order_mark_and_crlf_line_ends(tmp_path: Path) -> None:
    """A list saved by a Windows editor (a BOM, CR LF) names its first file too."""
    src = make_tree(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + os.fsencode(str(src / "one")) + b"\r\n" + os.fsencode(str(src / "sub")) + b"\r\n")
    out = tmp_path / "out"
    out.mkdir()
    res = cp(f"--file-list={listing}", str(out))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["one", "sub"]


def test_a_file_list_that_is_not_utf8_is_a_one_line_error(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_bytes(os.fsencode(str(src / "one")) + b"\n" + os.fsencode(str(src)) + b"/caf\xe9\n")
    out = tmp_path / "out"
    out.mkdir()
    res = cp(f"--file-list={listing}", str(out))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "line 2 is not UTF-8 text" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert list(out.iterdir()) == []

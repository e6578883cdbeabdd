"""-n follow: "treat the link as if it were the file or directory it points to, so that at the
destination, what was a link is now a copy of the file or directory". A link that leads back to
a directory above it would make that copy endless: it is reported as an error and not followed;
a dangling link is an error too."""

from __future__ import annotations

import os
from pathlib import Path

from test_sync import listing, statuses, sync, write


def test_follow_copies_what_links_point_to(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"real/r": "r", "f": "f"})
    dst.mkdir()
    os.symlink("real", src / "ldir")
    os.symlink("f", src / "lfile")
    report = sync(src, dst, "-n", "follow")
    assert report.ok, report.errors
    assert listing(dst) == {"real": None, "real/r": b"r", "f": b"f", "ldir": None, "ldir/r": b"r", "lfile": b"f"}
    assert not any(os.path.islink(p) for p in dst.rglob("*"))


def test_follow_reports_a_dangling_link(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"f": "f"})
    dst.mkdir()
    os.symlink("nowhere", src / "dangling")
    report = sync(src, dst, "-n", "follow")
    assert not report.ok and [p for p, _ in report.errors] == ["dangling"]
    assert listing(dst) == {"f": b"f"}


def test_follow_reports_a_link_back_to_a_directory_above_it(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"a/f": "f", "b/g": "g"})
    dst.mkdir()
    os.symlink("..", src / "a" / "up")  # back to the root
    os.symlink("../a", src / "b" / "to_a")  # fine: a is not above b/to_a
    os.symlink("../b/to_a", src / "a" / "via_b")  # a -> b/to_a -> a: back to a
    report = sync(src, dst, "-n", "follow")
    errors = dict(report.errors)
    assert set(errors) == {"a/up", "a/via_b", "b/to_a/up", "b/to_a/via_b"}
    assert all("loop" in message for message in errors.values())
    assert listing(dst) == {"a": None, "a/f": b"f", "b": None, "b/g": b"g", "b/to_a": None, "b/to_a/f": b"f"}
    assert statuses(report)["b/to_a/f"] == "SYNCHRONIZED"

"""-k none is "a size check only": async does not see a change of modification time, so a file
whose size did not change is not synchronized again (the reference's -k and its object storage
note); the other checksum types see the new time and compare content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_sync import statuses, sync, write


def edit_same_size(path: Path, text: str) -> None:
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.mark.parametrize("direction", ["push", "bidi"])
def test_k_none_does_not_see_a_same_size_change(tmp_path: Path, direction: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"f": "aaaa"})
    dst.mkdir()
    assert sync(src, dst, "-k", "none", "-K", direction).ok
    edit_same_size(src / "f", "bbbb")
    report = sync(src, dst, "-k", "none", "-K", direction)
    assert report.ok and statuses(report) == {}
    assert (dst / "f").read_text() == "aaaa"
    (src / "f").write_text("ccccc")  # a new size is a change
    report = sync(src, dst, "-k", "none", "-K", direction)
    assert statuses(report) == {"f": "SYNCHRONIZED"} and (dst / "f").read_text() == "ccccc"


@pytest.mark.parametrize("checksum", ["sha1", "md5", "sha1-sparse", "md5-sparse"])
def test_a_checksum_type_sees_a_same_size_change(tmp_path: Path, checksum: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"f": "aaaa"})
    dst.mkdir()
    assert sync(src, dst, "-k", checksum).ok
    edit_same_size(src / "f", "bbbb")
    report = sync(src, dst, "-k", checksum)
    assert statuses(report) == {"f": "SYNCHRONIZED"} and (dst / "f").read_text() == "bbbb"

"""The far end's plan for many files into one directory (found through one listing) is the plan
each file gets on its own (found through stats): existing files, partial files with resume
state, links, and absent names alike."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from workers.receive import RESUME_SUFFIX, IncomingFile, ReceiveOptions, plan_receive

MTIME = 1_700_000_000.0


def _setup(dst: Path, n: int) -> list[IncomingFile]:
    """n incoming files of 100 bytes: some exist (same or other size), some have a resumable
    partial file, one name is a symbolic link, the rest are new."""
    dst.mkdir()
    files = []
    for i in range(n):
        name = f"f{i:03d}"
        files.append(IncomingFile(f"dst/{name}", 100, MTIME, MTIME))
        if i % 5 == 0:
            (dst / name).write_bytes(b"x" * (100 if i % 10 == 0 else 50))
            os.utime(dst / name, (MTIME - 10, MTIME - 10))
        elif i % 7 == 0:
            (dst / (name + ".partial")).write_bytes(b"y" * 40)
            (dst / (name + RESUME_SUFFIX)).write_text(
                json.dumps({"size": 100, "mtime": MTIME, "ranges": [[0, 40]]})
            )
        elif i == 3:
            (dst / "elsewhere").write_bytes(b"z" * 100)
            (dst / name).symlink_to(dst / "elsewhere")
    return files


@pytest.mark.parametrize("resume", [0, 1, 2])
@pytest.mark.parametrize("overwrite", ["diff", "always", "never"])
def test_plan_of_many_equals_plan_of_each(tmp_path: Path, resume: int, overwrite: str) -> None:
    dst = tmp_path / "dst"
    files = _setup(dst, 60)
    opts = ReceiveOptions(
        destination=str(tmp_path), single_source=False, overwrite=overwrite, resume=resume
    )
    targets, together = plan_receive(opts, files, [])
    alone = [plan_receive(opts, [f], [])[1][0] for f in files]
    assert together == alone
    assert targets == [str(dst / f.rel.split("/")[1]) for f in files]
    actions = {p["action"] for p in together}
    assert "send" in actions and (overwrite != "never" or "skip" in actions)
    if resume and overwrite != "never":
        assert together[7].get("have") == [[0, 40]]


def test_a_destination_link_is_followed_but_not_out_of_the_docroot(tmp_path: Path) -> None:
    """A destination that is a symbolic link is written to its target, which must stay inside
    the docroot like every other path."""
    from common.paths import PathError

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "real").write_bytes(b"old")
    (root / "link").symlink_to("real")
    (outside / "victim").write_bytes(b"keep")
    (root / "out").symlink_to(outside / "victim")
    real = os.path.realpath(root)

    def inside(path: str) -> bool:
        return os.path.realpath(path) == real or os.path.realpath(path).startswith(real + os.sep)

    incoming = [IncomingFile("f", 3, MTIME, MTIME)]
    targets, _ = plan_receive(ReceiveOptions(destination=str(root / "link")), incoming, [], inside)
    assert targets == [os.path.join(real, "real")]
    with pytest.raises(PathError):
        plan_receive(ReceiveOptions(destination=str(root / "out")), incoming, [], inside)

"""A name that is not valid UTF-8 (bytes a file system allows, e.g. Latin-1 `caf\\xe9`) cannot cross
the control channel or the snapshot: before, one such name stopped a whole `surge sync` (or
`surge cp` of a tree) with a traceback and nothing was synchronized. Now the name is an error line of its own (so the run's
status says not everything synchronized), the rest is synchronized, and a far end leaves it out
of its listings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from test_sync import listing, statuses, sync, write

from common.serverconfig import UserPolicy
from workers.context import AgentContext
from workers.ops import handle_op

ODD = b"caf\xe9"  # Latin-1 "café": not UTF-8


def odd_file(root: Path) -> None:
    with open(os.fsencode(str(root)) + b"/" + ODD, "wb") as f:
        f.write(b"latin")


def test_a_name_that_is_not_utf8_is_an_error_and_the_rest_is_synchronized(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"ok": "y", "d/also": "z"})
    odd_file(src)
    report = sync(src, dst, "--create-dir")
    assert not report.ok
    odd = os.fsdecode(ODD)
    assert [p for p, _ in report.errors] == [odd]
    assert report.errors == [(odd, "name is not valid UTF-8; not synchronized")]
    assert statuses(report) == {"ok": "SYNCHRONIZED", "d": "SYNCHRONIZED", "d/also": "SYNCHRONIZED"}
    assert set(listing(dst)) == {"ok", "d", "d/also"}


def test_a_pull_leaves_such_a_name_where_it_is(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    write(there, {"ok": "y"})
    odd_file(there)
    here.mkdir()
    report = sync(here, there, "-K", "pull")
    assert [p for p, _ in report.errors] == [os.fsdecode(ODD)]
    assert set(listing(here)) == {"ok"}


def test_a_far_ends_listing_leaves_such_a_name_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, {"ok": "y"})
    odd_file(root)
    os.mkdir(os.fsencode(str(root)) + b"/dir-" + ODD)
    sent: list[dict[str, Any]] = []

    class Replies:
        def send(self, msg: dict[str, Any]) -> None:
            sent.append(msg)

    handle_op(Replies(), {"type": "op", "op": "list", "path": "/", "page": 100},  # type: ignore[arg-type]
              AgentContext(user="u", policy=UserPolicy(docroot=str(root))))  # fmt: skip
    assert [e["path"] for e in sent[0]["entries"]] == ["ok"]


def test_surge_cp_of_a_tree_with_such_a_name_copies_the_rest_and_says_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    src, out = tmp_path / "src", tmp_path / "out"
    write(src, {"ok": "y"})
    odd_file(src)
    out.mkdir()
    res = subprocess.run([sys.executable, "-m", "coordinator.cli", "cp", "-q", str(src), f"{out}/"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "name is not valid UTF-8; not transferred" in res.stderr
    assert set(listing(out)) == {"src", "src/ok"}

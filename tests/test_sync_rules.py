"""Rules of the async reference checked through the `surge sync` command: -R/--cookie/--tags
reach the far end, --file-manifest-path, and bidi --ignore-delete ("ignored, but the next time
async is run, the file is recopied from the other end")."""

from __future__ import annotations

from pathlib import Path

from test_sync_usage import pair, surge_sync

__all__ = ["pair"]  # the fixture, shared with the usage tests


def test_remote_log_dir_cookie_and_tags_reach_the_far_end(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """-R: the far end logs the session into that directory, with --cookie and --tags."""
    src, dst = pair
    logs = tmp_path / "far-logs"
    res = surge_sync("-N", "p", "-d", str(src), "-r", str(dst), "-R", str(logs), "--cookie=c00kie",
                     "--tags", '{"job": 7}')  # fmt: skip
    assert res.returncode == 0, res.stderr
    text = "".join(p.read_text() for p in logs.iterdir())
    assert "cookie 'c00kie'" in text and '{"job": 7}' in text


def test_file_manifest_path_lists_the_transferred_files(pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, dst = pair
    manifests = tmp_path / "manifests"
    res = surge_sync("-N", "p", "-d", str(src), "-r", str(dst), "--file-manifest-path", str(manifests))
    assert res.returncode == 0, res.stderr
    (written,) = manifests.iterdir()
    assert written.name.endswith("-manifest.txt")
    assert sorted(written.read_text().splitlines()) == ["/a", "/d/b"]


def test_bidi_ignore_delete_ignores_a_deletion_then_copies_the_file_back(pair: tuple[Path, Path]) -> None:
    """The reference: "In bidirectional sync, a deletion on one side is ignored but the next
    time async is run, the file is recopied from the other end.\""""
    src, dst = pair
    args = ("-N", "p", "-d", str(src), "-r", str(dst), "-K", "bidi", "--ignore-delete")
    assert surge_sync(*args).returncode == 0
    (src / "a").unlink()
    (dst / "d" / "b").unlink()
    res = surge_sync(*args)
    assert res.returncode == 0, res.stderr
    assert (dst / "a").exists() and (src / "d" / "b").exists() and not (src / "a").exists()
    res = surge_sync(*args)
    assert res.returncode == 0, res.stderr
    assert (src / "a").read_text() == "a" and (dst / "d" / "b").read_text() == "b"
    assert "SYNCHRONIZED" in res.stdout

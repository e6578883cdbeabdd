"""The filtering pages' rules (seeds 003/004) end to end: what `surge sync` copies, local to local,
with --include/--exclude/-I/-E. The matching itself is tested in tests/test_filters_*.py."""

from __future__ import annotations

from pathlib import Path

from test_sync import listing, sync, write

TREE: dict[str, str | None] = {
    "abc/file": "f", "abc/.file": "h", "abc/dir/x": "x", "abc/wxy/tuv/file": "t",
    "xyz/abc/def": "n", "abc/def": "d", "file": "f", "dir/file": "f", "keep/dir": None,
    "Debug": "D", "debug": "d", "DEBUG": "U", "voilà": "v", ".hidden": "h", "a.jpg": "j",
}


def synced(tmp_path: Path, *args: str) -> set[str]:
    """Sync TREE with `args`; the paths that arrived."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, TREE)
    dst.mkdir()
    report = sync(src, dst, *args)
    assert report.ok
    return set(listing(dst))


def test_globbing_extensions_table(tmp_path: Path) -> None:
    """003 "Examples of Globbing Extensions": a final '/**' takes what is below, not the directory;
    '/' at the end takes directories only, no '/' files only; a leading '/' anchors, and a rule
    without one matches at any depth."""
    got = synced(tmp_path, "--exclude", "abc/**", "--exclude", "keep/*/", "--exclude", "/dir/file",
                 "--exclude", "/xyz/abc/", "--exclude", "file")
    assert got == {"abc", "dir", "keep", "xyz",
                   "Debug", "debug", "DEBUG", "voilà", ".hidden", "a.jpg"}


def test_case_always_matters_and_names_may_be_multibyte(tmp_path: Path) -> None:
    got = synced(tmp_path, "--exclude", "[Dd]ebug", "--exclude", "voil[[:alpha:]]")
    assert {"Debug", "debug", "voilà"}.isdisjoint(got)
    assert "DEBUG" in got


def test_an_excluded_directory_is_not_scanned(tmp_path: Path) -> None:
    """004: with --exclude /above/ --include /above/below, /above/below is never considered."""
    got = synced(tmp_path, "--exclude", "/abc/", "--include", "/abc/file")
    assert not any(p == "abc" or p.startswith("abc/") for p in got)
    assert "xyz/abc/def" in got


def test_rule_files_and_the_two_final_rules(tmp_path: Path) -> None:
    """Rule files: '+ '/'- ' lines, plain lines of the file's kind, comments, blank lines and
    leading white space; '- *' alone keeps hidden names, '- .*' as well drops them."""
    rules = tmp_path / "rules"
    rules.write_text("# only pictures and what lies in abc\n\n   + *.jpg\n+ abc/\n"
                     "\t+ abc/**\n- *\n")
    got = synced(tmp_path, "-E", str(rules))
    assert got == {"a.jpg", "abc", "abc/.file", "abc/file", "abc/dir", "abc/dir/x", "abc/def",
                   "abc/wxy", "abc/wxy/tuv", "abc/wxy/tuv/file", ".hidden"}
    (tmp_path / "more").write_text("+ a.jpg\n.hidden\n")
    got = synced(tmp_path / "again", "-I", str(tmp_path / "more"), "--exclude", "*",
                 "--exclude", ".*")
    assert got == {"a.jpg", ".hidden"}

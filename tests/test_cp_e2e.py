"""`surge cp` end to end: real processes, real UDP on 127.0.0.1, files in and files out."""

from __future__ import annotations

import filecmp
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.cp.client import run_copy
from coordinator.cp.options import parse_cp_args


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def surge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def cp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return surge("cp", "-O", str(free_udp_port()), *args, timeout=timeout)


def make_tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "emptydir").mkdir()
    (src / "big.bin").write_bytes(os.urandom(3_000_001))
    (src / "sub" / "a.txt").write_text("alpha\n")
    (src / "sub" / "deeper" / "b.dat").write_bytes(os.urandom(70_000))
    (src / "empty").write_bytes(b"")
    (src / "one").write_bytes(b"x")
    return src


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in cmp.common_dirs)


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


def test_faux_source_to_faux_destination(tmp_path: Path) -> None:
    res = cp("-l", "2g", "faux:///gen?20m", "faux://")
    assert res.returncode == 0, res.stderr
    assert "20.0 MiB" in res.stderr


def test_faux_source_written_to_disk(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert cp("-l", "1g", "faux:///zeros?1m", str(out)).returncode == 0
    assert (out / "zeros").read_bytes() == bytes(1 << 20)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--no-such-option", "a", "b"], "--no-such-option"),
        (["-l", "fast", "a", "b"], "-l"),
        (["-Z", "100", "a", "b"], "-Z"),
        (["-c", "rot13", "a", "b"], "-c"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    res = surge("cp", *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("surge cp: error:")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-E", "[abc"], "-E: unterminated '['"),
        (["-N", "*.txt", "-E", "/**x"], "-E: "),
        (["-y", "1"], "-y 1: HTTP fallback is not supported"),
        (["--preserve-xattrs=metafile"], "--preserve-xattrs=metafile: surge cp does not preserve"),
        (["--file-crypt=encrypt"], "--file-crypt: client-side encryption at rest is not supported"),
    ],
)
def test_refused_options_and_bad_patterns_are_usage_errors_that_write_nothing(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    src = make_tree(tmp_path)
    out = tmp_path / "out"
    res = cp(*args, "-d", str(src), str(out))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [f"surge cp: error: {res.stderr.strip()[len('surge cp: error: '):]}"]
    assert needle in res.stderr
    assert not out.exists()


def test_a_cloud_storage_uri_is_refused_before_connecting(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    res = cp(str(src), "s3://bucket/in/")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "surge cp: error: s3://bucket/in/: s3:// URIs (cloud storage, stdio) are not supported; "
        "use a local path, [user@]host:path or faux://"
    )


def test_missing_source_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = cp(str(tmp_path / "nope"), str(out))
    assert res.returncode == 1
    assert res.stderr.strip() == f"surge cp: error: source not found: {tmp_path / 'nope'}"
    assert not out.exists()


def test_unwritable_destination_fails_cleanly(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("data")
    res = cp(str(f), "/proc/no/such/dir/")
    assert res.returncode == 1
    assert "destination" in res.stderr and len(res.stderr.strip().splitlines()) == 1



def test_existing_file_survives_a_failed_transfer(tmp_path: Path) -> None:
    """Kill the receiving agent mid-transfer: the old destination file is untouched."""
    src = tmp_path / "big"
    src.write_bytes(os.urandom(6_000_000))
    out = tmp_path / "out"
    out.mkdir()
    (out / "big").write_bytes(b"precious")
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "cp", "-l", "8m", "-O", str(free_udp_port()),
                             str(src), str(out)], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (out / "big.partial").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        _kill_agents(proc.pid)
        _, _err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert (out / "big").read_bytes() == b"precious"
    # A killed receiver cannot clean up; the next run (-k 0) starts over and leaves no residue.
    assert cp("-l", "1g", str(src), str(out)).returncode == 0
    assert (out / "big").read_bytes() == src.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["big"]


def _kill_agents(parent: int) -> None:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    for pid in out:
        os.kill(int(pid), signal.SIGKILL)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_resume_after_killed_receiver_sends_only_what_was_missing(tmp_path: Path, level: int) -> None:
    size = 8_000_000
    src = tmp_path / "movie.bin"
    src.write_bytes(os.urandom(size))
    out = tmp_path / "out"
    out.mkdir()
    port = str(free_udp_port())
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "cp", "-k", str(level), "-l", "12m",
                             "-O", port, str(src), str(out)], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (out / "movie.bin.aspx").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (out / "movie.bin.aspx").exists(), "no resume state was written"
        _kill_agents(proc.pid)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert not (out / "movie.bin").exists()
    assert (out / "movie.bin.partial").exists()
    result = run_copy(parse_cp_args(["-k", str(level), "-l", "1g", "-O", port, str(src), str(out)]))
    assert result.ok
    assert (out / "movie.bin").read_bytes() == src.read_bytes()
    sent = result.stats["sender"]["bytes_sent"]
    assert 0 < sent < size * 0.9, f"resume sent {sent} of {size} bytes"
    assert not (out / "movie.bin.partial").exists() and not (out / "movie.bin.aspx").exists()


def test_resume_with_a_corrupted_partial_restarts_at_level_3(tmp_path: Path) -> None:
    size = 2_000_000
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(size))
    out = tmp_path / "out"
    out.mkdir()
    partial = out / "f.bin.partial"
    partial.write_bytes(os.urandom(size // 2))  # wrong bytes where the state claims good ones
    st = os.stat(src)
    (out / "f.bin.aspx").write_text(f'{{"size": {size}, "mtime": {st.st_mtime}, "ranges": [[0, {size // 2}]]}}')
    result = run_copy(parse_cp_args(["-k", "3", "-l", "1g", "-O", str(free_udp_port()), str(src), str(out)]))
    assert result.ok
    assert (out / "f.bin").read_bytes() == src.read_bytes()
    assert result.stats["sender"]["bytes_sent"] == size  # all of it: the partial could not be trusted


def test_receiver_memory_stays_flat(tmp_path: Path) -> None:
    """300 MB through the receiver: its peak RSS must not grow with the file (no buffering)."""
    out = tmp_path / "out"
    out.mkdir()
    result = run_copy(parse_cp_args(["-l", "20g", "-O", str(free_udp_port()), "faux:///big?300m", str(out)]))
    assert result.ok
    assert (out / "big").stat().st_size == 300 << 20
    assert result.stats["receiver"]["max_rss_bytes"] < 150e6


def test_local_copy_when_its_udp_port_is_taken(tmp_path: Path) -> None:
    """The embedded far end takes another free port when -O's is in use (two local copies at
    once, or any program on 33001), rather than failing."""
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(200_000))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        done = surge("cp", "-O", str(taken), str(src), str(tmp_path / "out.bin"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()


def test_agent_peak_memory_is_its_own_not_its_parents() -> None:
    """Linux's ru_maxrss survives execve; the receiver's reported peak must not include the memory
    of the process that started it."""
    blob = bytearray(200 << 20)
    for i in range(0, len(blob), 4096):
        blob[i] = 1
    code = "from workers.push import peak_rss; print(peak_rss())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout) < 150e6
    del blob


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

"""`surge cp` end to end, failures and resources: usage errors that write nothing, missing sources and
unwritable destinations, resume after a killed receiver, memory and a taken UDP port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.cp.client import run_copy
from coordinator.cp.options import parse_cp_args

sys.path.insert(0, os.path.dirname(__file__))
from cp_e2e_helpers import cp, free_udp_port, make_tree, surge


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

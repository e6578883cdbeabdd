"""`surge sync -C` end to end: a real `surge sync -C` process (local agent, UDP on loopback,
inotify), files changed while it runs, each change checked at the far end byte for byte within
a generous deadline (polling, never a sleep that assumes speed). A pull through a real far end
(`surge server`), a restart after SIGTERM, the Prometheus gauges, and the fall-back to periodic
scans when inotify watches run out (a user namespace with a tiny limit)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import free_tcp_port, free_udp_port, surge_server

DEADLINE = 60.0  # seconds: far beyond what any change takes, even on a loaded machine


def listing(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == ".surge":
            continue
        out[str(rel)] = None if p.is_dir() else p.read_bytes()
    return out


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:  # a file went away while it was being compared: look again
            pass
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


class Sync:
    """One `surge sync -C` process; its status lines are read from a file as they come."""

    def __init__(self, tmp: Path, src: Path, dst: str | Path, *args: str, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.out, self.err = tmp / f"out-{id(self)}.txt", tmp / f"err-{id(self)}.txt"
        argv = [*prefix, sys.executable, "-m", "coordinator.cli", "sync", "-N", "cont", "-d", str(src), "-r", str(dst),
                "-C", "-O", str(free_udp_port()), "-l", "1g", *args]  # fmt: skip
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=err, env={**os.environ, **(env or {})}
            )

    def lines(self) -> list[tuple[str, str]]:
        out = []
        for line in self.out.read_text().splitlines():
            path, _, status = line.partition(" ")
            out.append((path.lstrip("/"), status.strip()))
        return out

    def count(self, path: str, status: str | None = None) -> int:
        return sum(1 for p, s in self.lines() if p == path and (status is None or s == status))

    def reported(self, path: str, status: str) -> None:
        """Wait for the status line of a change already seen at the far end (printed just
        after it), then check it came once."""
        wait_for(lambda: self.count(path, status) > 0, f"{path} {status}")
        assert self.count(path, status) == 1, self.lines()

    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"surge sync -C did not stop on signal {sig}: {self.stderr()[-2000:]}"
            ) from None

    def running(self) -> bool:
        assert self.proc.poll() is None, f"surge sync -C exited: {self.stderr()[-2000:]}"
        return True


@pytest.fixture
def trees(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    yield src, dst


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Sync]]:
    procs: list[Sync] = []
    yield procs
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def same(src: Path, dst: Path) -> Callable[[], bool]:
    return lambda: listing(src) == listing(dst)


def test_push_create_modify_delete_rename(
    trees: tuple[Path, Path], tmp_path: Path, started: list[Sync]
) -> None:
    src, dst = trees
    (src / "keep").write_text("initial")
    big = src / "big"
    big.mkdir()
    for i in range(1000):
        (big / f"f{i:04}").write_bytes(b"%d" % i * 50)
    port = free_tcp_port()
    sync = Sync(tmp_path, src, dst, "--cooloff", "1", "--metrics-port", str(port))
    started.append(sync)
    wait_for(lambda: sync.running() and sync.count("big/f0999") == 1, "the first sync")
    assert listing(dst) == listing(src)
    (src / "new.txt").write_bytes(os.urandom(70_000))
    (src / "keep").write_text("modified, and longer")
    wait_for(same(src, dst), "a created and a modified file")
    (src / "keep").unlink()
    wait_for(lambda: not (dst / "keep").exists(), "a deletion")
    sync.reported("keep", "SYNCHRONIZED(del)")
    inodes = {p.name: p.stat().st_ino for p in (dst / "big").iterdir()}
    (src / "new.txt").rename(src / "renamed.txt")
    big.rename(src / "moved")
    wait_for(same(src, dst), "a renamed file and a renamed directory of 1,000 files")
    sync.reported("renamed.txt", "SYNCHRONIZED(mov)")
    sync.reported("moved", "SYNCHRONIZED(mov)")
    (src / "marker").write_text("after the renames")  # batches run one after another: once this
    sync.reported("marker", "SYNCHRONIZED")  # is reported, whatever the rename caused is too
    assert not [p for p, _ in sync.lines() if p.startswith("moved/")]  # renamed, not resent
    assert {p.name: p.stat().st_ino for p in (dst / "moved").iterdir()} == inodes
    (src / "pending").write_text("x")  # seen, cooling off for a second: pending, with a lag

    def scrape() -> str:
        return (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        )

    wait_for(lambda: "surge_changes_pending 1.0" in scrape(), "a pending change in the metrics")
    wait_for(
        lambda: "surge_changes_pending 0.0" in scrape() and (dst / "pending").exists(),
        "no change pending",
    )
    assert "surge_sync_lag_seconds 0.0" in scrape()
    assert sync.stop() == 0
    assert "stopped" in sync.stderr()


def test_a_change_of_kind_follows_while_watching(trees: tuple[Path, Path], tmp_path: Path,
                                                 started: list[Sync]) -> None:  # fmt: skip
    """A file replaced by a directory (and a directory by a file) while the sync watches."""
    src, dst = trees
    (src / "x").write_text("a file")
    (src / "y").mkdir()
    (src / "y" / "inner").write_text("inside")
    sync = Sync(tmp_path, src, dst, "--cooloff", "1")
    started.append(sync)
    wait_for(lambda: sync.running() and listing(dst) == listing(src), "the first sync")
    (src / "x").unlink()
    (src / "x").mkdir()
    (src / "x" / "deep").write_text("now inside a directory")
    (src / "y" / "inner").unlink()
    (src / "y").rmdir()
    (src / "y").write_text("now a file")
    wait_for(same(src, dst), "a file become a directory and a directory become a file")
    assert sync.stop() == 0


def test_a_file_appended_while_written_arrives_once_complete(trees: tuple[Path, Path], tmp_path: Path,
                                                             started: list[Sync]) -> None:  # fmt: skip
    src, dst = trees
    sync = Sync(tmp_path, src, dst, "--cooloff", "2")
    started.append(sync)
    wait_for(lambda: sync.running() and "Synchronized" in sync.stderr(), "the first sync")
    chunks = [os.urandom(10_000) for _ in range(15)]
    with open(src / "growing.log", "wb") as fh:
        for chunk in chunks:  # one append every 0.1 s: well inside the 2 s cooloff
            fh.write(chunk)
            fh.flush()
            time.sleep(0.1)
    wait_for(lambda: (dst / "growing.log").exists(), "the written file")
    assert (dst / "growing.log").read_bytes() == b"".join(chunks)
    time.sleep(3)  # (a second, wrong, copy would come one cooloff later)
    assert sync.count("growing.log") == 1, sync.lines()


def test_bidi_changes_on_both_sides_and_a_conflict(trees: tuple[Path, Path], tmp_path: Path,
                                                   started: list[Sync]) -> None:  # fmt: skip
    src, dst = trees
    (src / "shared").write_text("v1")
    sync = Sync(tmp_path, src, dst, "-K", "bidi", "--cooloff", "1")
    started.append(sync)
    wait_for(lambda: sync.running() and sync.count("shared") == 1, "the first sync")
    (src / "from-local").write_text("L")
    (dst / "sub").mkdir()
    (dst / "sub" / "from-remote").write_text("R")
    wait_for(same(src, dst), "changes made on both sides")
    assert (src / "sub" / "from-remote").read_text() == "R" and (
        dst / "from-local"
    ).read_text() == "L"
    (dst / "sub").rename(dst / "sub2")
    wait_for(
        lambda: (src / "sub2" / "from-remote").exists() and not (src / "sub").exists(),
        "a remote rename",
    )
    sync.reported("sub2", "SYNCHRONIZED(mov)")
    (src / "from-local").unlink()
    wait_for(lambda: not (dst / "from-local").exists(), "a local deletion")
    (src / "shared").write_text("local version")  # both sides change it within one cooloff
    (dst / "shared").write_text("remote version, newer")
    future = time.time() + 5
    os.utime(dst / "shared", (future, future))
    wait_for(lambda: (src / "shared").read_text() == "remote version, newer" and
             len(list(src.glob("shared.conflict-*"))) == 1, "the conflict resolved")  # fmt: skip
    (copy,) = src.glob("shared.conflict-*")
    assert copy.read_text() == "local version"  # the loser is kept, not lost
    wait_for(same(src, dst), "both sides equal after the conflict")


def test_sigterm_then_restart_picks_up_what_changed_while_down(trees: tuple[Path, Path], tmp_path: Path,
                                                               started: list[Sync]) -> None:  # fmt: skip
    src, dst = trees
    for i in range(20):
        (src / f"f{i}").write_text(f"file {i}")
    sync = Sync(tmp_path, src, dst, "--cooloff", "0")
    started.append(sync)
    wait_for(lambda: sync.running() and sync.count("f19") == 1, "the first sync")
    (src / "late").write_bytes(os.urandom(5_000_000))
    assert sync.stop() == 0  # whether or not "late" made it, the snapshot must stay consistent
    assert "stopped" in sync.stderr()
    (src / "f0").write_text("changed while down")
    (src / "f1").unlink()
    (src / "d").mkdir()
    (src / "d" / "x").write_text("new while down")
    again = Sync(tmp_path, src, dst, "--cooloff", "0")
    started.append(again)
    wait_for(lambda: again.running() and same(src, dst)(), "the changes made while down")
    statuses = {p for p, _ in again.lines()}
    assert statuses <= {"f0", "f1", "d", "d/x", "late"}  # nothing unchanged is sent again
    again.reported("f1", "SYNCHRONIZED(del)")
    assert again.stop(signal.SIGINT) == 0


def test_no_scan_syncs_only_what_changes_after_the_start(trees: tuple[Path, Path], tmp_path: Path,
                                                         started: list[Sync]) -> None:  # fmt: skip
    src, dst = trees
    (src / "old").write_text("before the start")
    sync = Sync(tmp_path, src, dst, "--no-scan", "--cooloff", "0")
    started.append(sync)
    wait_for(lambda: sync.running() and (src / ".surge").exists(), "the start")
    time.sleep(1)  # let the watches be placed
    (src / "new").write_text("after the start")
    wait_for(lambda: (dst / "new").exists(), "a new file")
    assert not (dst / "old").exists()


def test_out_of_inotify_watches_says_so_and_scans(trees: tuple[Path, Path], tmp_path: Path,
                                                  started: list[Sync]) -> None:  # fmt: skip
    """A user namespace whose inotify watch limit is 2, a tree of 5 directories."""
    unshare = shutil.which("unshare")
    if (
        unshare is None
        or subprocess.run([unshare, "-Ur", "true"], capture_output=True).returncode != 0
    ):
        pytest.skip("no user namespaces here (unshare -Ur)")
    src, dst = trees
    for i in range(5):
        (src / f"d{i}").mkdir()
    script = 'echo 2 > /proc/sys/user/max_inotify_watches && exec "$@"'
    sync = Sync(tmp_path, src, dst, "--cooloff", "0", "--scan-interval", "0:00:01", "-H", "vhigh",
                prefix=(unshare, "-Ur", "sh", "-c", script, "sh"))  # fmt: skip
    started.append(sync)
    wait_for(lambda: sync.running() and "max_user_watches" in sync.stderr(), "the warning")
    assert "periodic scans only" in sync.stderr()
    wait_for(lambda: sync.count("d4") == 1, "the first sync")
    (src / "d3" / "deep").write_text("found by a scan")
    wait_for(same(src, dst), "a change in an unwatched directory")


def test_pull_from_a_remote_far_end(tmp_path: Path, started: list[Sync]) -> None:
    docroot = tmp_path / "docroot"
    (docroot / "mirror" / "dir").mkdir(parents=True)
    (docroot / "mirror" / "dir" / "a").write_text("remote a")
    local = tmp_path / "local"
    local.mkdir()
    with surge_server(tmp_path / "server", docroot=docroot) as far:
        sync = Sync(
            tmp_path,
            local,
            far.remote("/mirror"),
            *far.auth(),
            "-K",
            "pull",
            "--cooloff",
            "1",
            "--remote-scan-interval",
            "1s",
        )
        started.append(sync)
        remote = docroot / "mirror"
        wait_for(lambda: sync.running() and same(remote, local)(), "the first pull")
        (remote / "dir" / "b").write_bytes(os.urandom(300_000))
        (remote / "dir" / "a").write_text("remote a, changed")
        wait_for(same(remote, local), "remote changes")
        (remote / "dir").rename(remote / "dir2")
        wait_for(same(remote, local), "a remote rename")
        sync.reported("dir2", "SYNCHRONIZED(mov)")
        (remote / "dir2" / "a").unlink()
        wait_for(same(remote, local), "a remote deletion")
        assert sync.stop() == 0, sync.stderr()


def test_cooloff_max_gives_up_on_a_busy_file_then_sends_it_when_it_settles(
    trees: tuple[Path, Path], tmp_path: Path, started: list[Sync]
) -> None:
    src, dst = trees
    sync = Sync(tmp_path, src, dst, "--cooloff", "1", "--cooloff-max", "2")
    started.append(sync)
    wait_for(lambda: sync.running() and "watching" in sync.stderr(), "the start")
    deadline = time.monotonic() + DEADLINE
    with open(src / "busy", "wb") as fh:  # an append every 0.1 s until Surge gives up on it
        while not sync.count("busy") and time.monotonic() < deadline:
            fh.write(b"x" * 1000)
            fh.flush()
            time.sleep(0.1)
    assert next(s for p, s in sync.lines() if p == "busy").startswith(
        "ERROR: still changing after --cooloff-max 2"
    )
    wait_for(lambda: (dst / "busy").exists() and (dst / "busy").read_bytes() == (src / "busy").read_bytes(),
             "the file once it stopped changing")  # fmt: skip


def test_bidi_with_a_remote_far_end(tmp_path: Path, started: list[Sync]) -> None:
    docroot = tmp_path / "docroot"
    (docroot / "pair").mkdir(parents=True)
    (docroot / "pair" / "r0").write_text("remote 0")
    local = tmp_path / "local"
    local.mkdir()
    (local / "l0").write_text("local 0")
    with surge_server(tmp_path / "server", docroot=docroot) as far:
        sync = Sync(
            tmp_path, local, far.remote("/pair"), *far.auth(), "-K", "bidi", "--cooloff", "1"
        )
        started.append(sync)
        remote = docroot / "pair"
        wait_for(lambda: sync.running() and same(remote, local)(), "the first sync")
        (remote / "rdir").mkdir()
        (remote / "rdir" / "r1").write_bytes(os.urandom(100_000))
        (local / "l1").write_bytes(os.urandom(100_000))
        (local / "l0").unlink()
        wait_for(same(remote, local), "changes on both sides")
        (local / "l1").rename(local / "l1-renamed")
        (remote / "rdir").rename(remote / "rdir2")
        wait_for(same(remote, local), "renames on both sides")
        sync.reported("l1-renamed", "SYNCHRONIZED(mov)")
        sync.reported("rdir2", "SYNCHRONIZED(mov)")
        assert sync.stop() == 0, sync.stderr()


def test_metrics_port_is_only_for_continuous_mode(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    base = [
        sys.executable,
        "-m",
        "coordinator.cli",
        "sync",
        "-N",
        "m",
        "-d",
        str(src),
        "-r",
        str(dst),
    ]
    for extra, message in ((["--metrics-port", "9100"], "--metrics-port: only with -C"),
                           (["-C", "--metrics-port", "0"], "--metrics-port: 0 is out of range")):  # fmt: skip
        res = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and message in res.stderr, res.stderr

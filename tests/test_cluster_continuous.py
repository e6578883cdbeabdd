"""Continuous sync on a cluster, end to end: a private redis-server, two real `surge worker`
processes, a real `surge server` far end (SSH + UDP), and `surge sync -C --cluster`,
`surge coordinator`, `surge status`, `surge cancel` as subprocesses. Every change is checked at
the far end byte for byte within a generous deadline (polling, never a sleep that assumes
speed); a renamed directory must keep its far-end inodes (renamed, not resent), and the job's
counters must show each file sent once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promfix import parse, promtool_check, sample
from redis_server import RedisServer, redis_server
from sshd import FarEnd, free_tcp_port, free_udp_port, surge_server

SURGE = [sys.executable, "-m", "coordinator.cli"]
DEADLINE = 90.0  # seconds: far beyond what any change takes, even on a loaded machine
WORKERS = ("cw1", "cw2")


def surge_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SURGE_BROKER_URL", "SURGE_PASS")}
    return {**env, "SURGE_PAIR_LOCK_TTL_S": "3"}


@pytest.fixture(scope="module")
def broker() -> Iterator[RedisServer]:
    with redis_server(password="c0ntinuous-secret") as srv:
        yield srv


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarEnd]:
    base = tmp_path_factory.mktemp("far")
    (base / "docroot").mkdir()
    with surge_server(base / "server", docroot=base / "docroot", udp_ports=64) as end:
        yield end


@pytest.fixture(scope="module")
def workers(broker: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    logs = tmp_path_factory.mktemp("workers")
    procs = []
    for name in WORKERS:
        with open(logs / f"{name}.log", "wb") as fh:
            procs.append(subprocess.Popen([*SURGE, "worker", "--cluster", broker.url, "--hostname", name],
                                          stdout=fh, stderr=fh, env=surge_env()))  # fmt: skip
    yield
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def r(broker: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(broker.url)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed if the test left them running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def listing(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] in (".surge", ".private-asp") or ".partial" in p.name:
            continue
        out[rel.as_posix()] = None if p.is_dir() else p.read_bytes()
    return out


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:  # a file went away while it was being compared: look again
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def same(src: Path, dst: Path) -> Callable[[], bool]:
    return lambda: listing(src) == listing(dst)


def sync_argv(far: FarEnd, name: str, src: Path, dst: str, url: str, *extra: str) -> list[str]:
    return [*SURGE, "sync", "-N", name, "-d", str(src), "-r", far.remote(dst), *far.auth(), "-l", "200m",
            "--create-dir", "-C", "--cooloff", "1", "-O", str(free_udp_port()), "--cluster", url, *extra]  # fmt: skip


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=surge_env())


def status(url: str, pair: str) -> dict[str, Any]:
    """The pair's newest job as `surge status --json` shows it ({} before there is one)."""
    done = run([*SURGE, "status", "-N", pair, "--cluster", url, "--json"])
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)["jobs"]
    return dict(jobs[0]) if jobs else {}


def scrape(port: int) -> tuple[bytes, dict[Any, float]]:
    import urllib.request

    raw = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    return raw, parse(raw)


def far_inodes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in root.iterdir()}


def stop(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = DEADLINE
) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout)


def foreground_source(tmp_path: Path) -> Path:
    """The foreground pair's source: keep.txt and an album of 300 files."""
    src = tmp_path / "src"
    (src / "album").mkdir(parents=True)
    (src / "keep.txt").write_text("initial")
    for i in range(300):
        (src / "album" / f"p{i:03}.jpg").write_bytes(os.urandom(100 + i))
    return src


def reported(out: Path) -> list[tuple[str, str]]:
    """(path, status) of each line `surge sync` printed on its standard output."""
    return [
        (p.lstrip("/"), s.strip())
        for p, _, s in (x.partition(" ") for x in out.read_text().splitlines())
    ]


def check_first_sync(
    proc: subprocess.Popen[bytes], src: Path, dst: Path, url: str, out: Path, err: Path
) -> None:
    """The first sync ends watching, with every file at the far end, workers of the cluster
    counted, and no broker password in the output."""
    wait_for(
        lambda: proc.poll() is None and "watching for changes" in err.read_text(), "the first sync"
    )
    assert listing(dst) == listing(src)
    job = status(url, "fg")
    assert (job["continuous"], job["state"], job["files_done"]) == (True, "running", 301)
    assert job["workers"] and {w.split("@")[-1] for w in job["workers"]} <= set(WORKERS)
    assert "c0ntinuous-secret" not in err.read_text() + out.read_text()


def check_changes_arrive(src: Path, dst: Path, url: str, r: redis.Redis, out: Path) -> None:
    """Create, modify, delete, and the album renamed at the far end (same inodes, nothing
    resent), each reported once, with the counters to match and no task keys left behind."""
    (src / "new.bin").write_bytes(os.urandom(300_000))
    (src / "keep.txt").write_text("modified, and longer")
    wait_for(same(src, dst), "a created and a modified file")
    (src / "keep.txt").unlink()
    wait_for(lambda: not (dst / "keep.txt").exists(), "a deletion")
    before = far_inodes(dst / "album")
    (src / "album").rename(src / "renamed")
    wait_for(same(src, dst), "a renamed directory of 300 files")
    assert far_inodes(dst / "renamed") == before  # renamed at the far end, not resent
    (src / "marker").write_text("after the rename")  # batches run in order: once this is
    wait_for(lambda: ("marker", "SYNCHRONIZED") in reported(out), "the marker's line")  # reported, all is
    assert ("renamed", "SYNCHRONIZED(mov)") in reported(out) and (
        "keep.txt",
        "SYNCHRONIZED(del)",
    ) in reported(out)
    assert not [p for p, _ in reported(out) if p.startswith("renamed/")]
    wait_for(lambda: status(url, "fg")["changes_pending"] == 0, "the marker's batch to end")
    job = status(url, "fg")
    assert job["files_done"] == 301 + 3  # new.bin, keep.txt modified, marker: nothing resent
    assert (job["deleted"], job["moved"], job["errors"], job["lag_seconds"]) == (1, 1, 0, 0)
    assert not r.keys(f"surge:job:{job['job']}:task:*")  # finished batches leave no task keys


def write_slowly(path: Path, writing: threading.Event) -> None:
    """A file written for a while (until ``writing`` is set): one change, pending, ageing."""
    with open(path, "wb") as fh:
        while not writing.is_set():
            fh.write(b"x" * 1000)
            fh.flush()
            writing.wait(0.3)


def check_pending_change_and_lag(src: Path, dst: Path, url: str, port: int) -> None:
    """While a file is being written, one change is pending and the lag grows, in `surge
    status` and on the (promtool-clean) metrics endpoint; both return to 0 once it arrives."""
    writing = threading.Event()
    writer = threading.Thread(target=write_slowly, args=(src / "pending.txt", writing))
    writer.start()
    try:
        wait_for(
            lambda: status(url, "fg")["changes_pending"] == 1,
            "a pending change in surge status",
        )
        first = status(url, "fg")
        wait_for(
            lambda: status(url, "fg")["lag_seconds"] > first["lag_seconds"] + 1,
            "the lag growing",
        )
        raw, samples = scrape(port)
        promtool_check(raw)
        assert (
            sample(samples, "surge_changes_pending") == 1
            and sample(samples, "surge_sync_lag_seconds") > 1
        )
        assert sample(samples, "surge_continuous_jobs") == 1
    finally:
        writing.set()
        writer.join()
    wait_for(
        lambda: listing(dst).get("pending.txt") == (src / "pending.txt").read_bytes(),
        "the written file",
    )
    wait_for(
        lambda: sample(scrape(port)[1], "surge_changes_pending") == 0,
        "nothing pending in the metrics",
    )
    assert sample(scrape(port)[1], "surge_sync_lag_seconds") == 0
    assert status(url, "fg")["lag_seconds"] == 0


def test_foreground_continuous_sync_on_the_cluster(
    broker, far, workers, r, procs, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """`surge sync -C --cluster`: create, modify, delete, and a directory of 300 files renamed
    at the far end (not resent); pending changes and lag in `surge status` and on the metrics
    endpoint (promtool-clean); SIGTERM stops it with the job closed."""
    src = foreground_source(tmp_path)
    dst = far.docroot / "fg"  # type: ignore[operator]
    port = free_tcp_port()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(sync_argv(far, "fg", src, "/fg", broker.url, "--cooloff", "2", "--metrics-port", str(port)),
                                stdout=o, stderr=e, env=surge_env())  # fmt: skip
    procs.append(proc)
    check_first_sync(proc, src, dst, broker.url, out, err)
    check_changes_arrive(src, dst, broker.url, r, out)
    check_pending_change_and_lag(src, dst, broker.url, port)

    assert stop(proc) == 0, err.read_text()
    assert "stopped after" in err.read_text()
    job = status(broker.url, "fg")
    assert (job["state"], job["activity"]) == ("done", "stopped")
    assert not r.exists("surge:snap:fg:lock")  # the pair is free for the next run


def submit(far: FarEnd, name: str, src: Path, dst: str, url: str, *extra: str) -> str:
    done = run(sync_argv(far, name, src, dst, url, "--detach", *extra))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def coordinator(url: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen([*SURGE, "coordinator", "--cluster", url, *extra], stdout=fh, stderr=fh,
                                env=surge_env())  # fmt: skip


def running_requests(r: redis.Redis) -> list[str]:
    return [json.loads(x)["id"] for x in r.lrange("surge:coordinator:running", 0, -1)]


def check_beside_a_one_time_job(
    far: FarEnd, url: str, src: Path, dst: Path, other: Path, job: str, port: int
) -> None:
    """The continuous job's first sync, a one-time job run beside it in the one slot, a change
    that arrives while the coordinator runs, and the job on the metrics endpoint."""
    dst_other = far.docroot / "once"  # type: ignore[operator]
    wait_for(same(src, dst), "the continuous job's first sync")
    once = run([*SURGE, "sync", "-N", "once", "-d", str(other), "-r", far.remote("/once"), *far.auth(),
                "--create-dir", "--cluster", url, "--detach"])  # fmt: skip
    assert once.returncode == 0, once.stderr
    wait_for(
        lambda: status(url, "once").get("state") == "done", "the one-time job beside it"
    )
    assert listing(dst_other) == listing(other)
    (src / "second.txt").write_text("2")
    wait_for(same(src, dst), "a change while the coordinator runs")
    progress = status(url, "svc")
    assert (progress["job"], progress["state"], progress["detached"]) == (job, "running", True)
    raw, samples = scrape(port)
    promtool_check(raw)
    assert sample(samples, "surge_continuous_jobs") == 1


def restart_after_changes_while_down(
    coord: subprocess.Popen[bytes], r: redis.Redis, url: str, src: Path, job: str, log: Path,
    port: int,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """SIGTERM stops the job with its request kept; changes made while no coordinator runs
    arrive after a restart, which resumes the same job. Returns the restarted coordinator."""
    assert stop(coord) == 0, log.read_text()[-2000:]
    assert status(url, "svc")["state"] == "stopped" and running_requests(r) == [job]
    (src / "while-down.txt").write_text("made while no coordinator ran")
    (src / "first.txt").unlink()
    (src / "second.txt").write_text("2, modified while down")
    return coordinator(url, log, "--metrics-port", str(port))


def check_resumed(url: str, src: Path, dst: Path, job: str) -> None:
    """The restarted coordinator's first sync brings the changes made while it was down."""
    wait_for(same(src, dst), "the changes made while the coordinator was down")
    wait_for(lambda: status(url, "svc")["activity"] == "watching", "the restart's first sync")
    progress = status(url, "svc")
    assert (progress["job"], progress["state"]) == (job, "running")  # the same job, resumed
    assert (
        progress["files_done"] == 4 and progress["deleted"] == 1
    )  # first, second twice, while-down


def check_cancel(coord: subprocess.Popen[bytes], r: redis.Redis, url: str, job: str, port: int) -> None:
    """`surge cancel` ends the job for good while the coordinator goes on; a second cancel
    finds nothing to cancel."""
    cancel = run([*SURGE, "cancel", "-N", "svc", "--cluster", url])
    assert cancel.returncode == 0 and cancel.stdout.strip() == f"job {job}: cancelled", (
        cancel.stderr
    )
    assert status(url, "svc")["state"] == "cancelled"
    wait_for(lambda: running_requests(r) == [], "the request to leave the running list")
    wait_for(
        lambda: sample(scrape(port)[1], "surge_continuous_jobs") == 0,
        "no continuous job in the metrics",
    )
    assert coord.poll() is None  # the service goes on
    again = run([*SURGE, "cancel", "-N", "svc", "--cluster", url])
    assert again.returncode == 1 and "no continuous job to cancel" in again.stderr


def test_coordinator_runs_resumes_and_cancels_a_continuous_job(
    broker, far, workers, r, procs, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A detached continuous job in `surge coordinator --jobs 1`, beside a one-time job that
    still gets the slot; SIGTERM stops it (request kept); changes made while the coordinator
    is down arrive after its restart; `surge cancel` ends it for good."""
    src, other = tmp_path / "src", tmp_path / "other"
    src.mkdir()
    other.mkdir()
    (src / "first.txt").write_text("1")
    (other / "once.txt").write_text("one-time")
    dst = far.docroot / "svc"  # type: ignore[operator]
    job = submit(far, "svc", src, "/svc", broker.url)
    port = free_tcp_port()
    log = tmp_path / "coord.log"
    coord = coordinator(broker.url, log, "--jobs", "1", "--metrics-port", str(port))
    procs.append(coord)
    check_beside_a_one_time_job(far, broker.url, src, dst, other, job, port)
    coord = restart_after_changes_while_down(coord, r, broker.url, src, job, log, port)
    procs.append(coord)
    check_resumed(broker.url, src, dst, job)
    check_cancel(coord, r, broker.url, job, port)
    assert stop(coord) == 0


def test_a_second_signal_leaves_the_batch_to_the_workers_and_a_restart_adopts_it(
    broker, far, workers, r, procs, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Two SIGTERMs while a slow batch is in flight: the coordinator exits at once, the job
    stays resumable, and the restarted coordinator records the file the workers finished
    instead of sending it again (the job counts it once)."""
    src = tmp_path / "src"
    src.mkdir()
    dst = far.docroot / "halt"  # type: ignore[operator]
    job = submit(far, "halt", src, "/halt", broker.url, "-l", "16m")
    log = tmp_path / "coord.log"
    coord = coordinator(broker.url, log)
    procs.append(coord)
    wait_for(lambda: status(broker.url, "halt").get("activity") == "watching", "the first sync")
    data = os.urandom(10 << 20)  # 5 s at 16 Mbit/s
    (src / "big.bin").write_bytes(data)
    wait_for(lambda: bool(r.keys(f"surge:job:{job}:task:*")), "the batch's task in Redis", 30)
    coord.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    started = time.monotonic()
    assert stop(coord, timeout=30) == 0, log.read_text()[-2000:]
    assert time.monotonic() - started < 10
    assert "stopped at once; its batch in flight goes on" in log.read_text()  # not after the batch
    assert status(broker.url, "halt")["state"] == "stopped" and running_requests(r) == [job]
    coord = coordinator(broker.url, log)
    procs.append(coord)
    wait_for(
        lambda: (dst / "big.bin").exists() and (dst / "big.bin").read_bytes() == data,
        "the big file",
    )
    wait_for(
        lambda: status(broker.url, "halt").get("activity") == "watching", "the restart's first sync"
    )
    progress = status(broker.url, "halt")
    assert progress["files_done"] == 1 and progress["errors"] == 0  # sent once, by the adopted task
    assert r.hget(f"surge:job:{job}", "seq") == b"1"  # the restart dispatched nothing more
    assert not r.keys(f"surge:job:{job}:task:*")  # and forgot the adopted batch
    cancel = run([*SURGE, "cancel", "-N", "halt", "--cluster", broker.url])
    assert cancel.returncode == 0, cancel.stderr
    assert stop(coord) == 0


@pytest.mark.parametrize(("extra", "needle"), [
    (["-C", "-K", "pull"], "--cluster: -K pull is not run on a cluster"),
    (["-C", "-K", "bidi"], "--cluster: -K bidi is not run on a cluster"),
    (["-C", "--detach", "--metrics-port", "9999"], "--metrics-port: with --detach"),
])  # fmt: skip
def test_continuous_cluster_option_errors_exit_2(tmp_path, extra: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    argv = [
        *SURGE,
        "sync",
        "-N",
        "o",
        "-d",
        str(tmp_path),
        "-r",
        "u@far:/x",
        "--cluster",
        "redis://h/0",
        *extra,
    ]
    done = run(argv)
    assert (
        done.returncode == 2
        and needle in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    ), done.stderr


@pytest.mark.parametrize(("argv", "needle"), [
    (["coordinator", "--continuous-jobs", "0"], "--continuous-jobs: 0 out of range"),
    (["cancel", "-N", "x", "--wait", "-1"], "--wait: -1 out of range"),
])  # fmt: skip
def test_new_options_are_checked(argv: list[str], needle: str) -> None:
    done = run([*SURGE, *argv])
    assert (
        done.returncode == 2
        and needle in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    )


def test_cancel_without_a_job_and_of_a_one_time_job_is_one_line(broker, r) -> None:  # type: ignore[no-untyped-def]
    from common.cluster.jobs import JobStore

    JobStore(r).create_job("plain", {"name": "plain"}, [], job_id="0ne71me0b000")
    for argv, needle in ((["-N", "nothing"], "pair 'nothing' has no continuous job to cancel"),
                         (["-N", "plain", "--job", "0ne71me0b000"], "is a one-time job")):  # fmt: skip
        done = run([*SURGE, "cancel", *argv, "--cluster", broker.url])
        assert (
            done.returncode == 1
            and needle in done.stderr
            and len(done.stderr.strip().splitlines()) == 1
        )

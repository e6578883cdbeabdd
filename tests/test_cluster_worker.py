"""The worker side of a cluster, end to end: a real redis-server, real `surge worker` processes
(Celery, solo pool) and a real far end (`surge agent` on this machine, over the UDP transport).

The coordinator's part is played by the test: it writes jobs with JobStore and queues their
tasks with `dispatch`, then checks the destination byte for byte, the task records and the
job's events and counters.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from common.cluster.joboptions import JobOptionsError, job_options, sync_options
from common.cluster.jobs import JobStore
from common.cluster.schema import (
    QUEUE_LARGE,
    QUEUE_SMALL,
    SCHEMA_VERSION,
    TASK_TRANSFER,
    FileRef,
    RangeRef,
    TaskSpec,
    key,
)
from common.units import Rate
from coordinator.sync.options import SyncOptions
from tests.redis_server import redis_server
from workers.cluster.app import WorkerSettings, dispatch, make_app
from workers.cluster.executor import Retry, run_batch, run_task

PASSWORD = "s3cret-pw"
VISIBILITY_S = 5  # the broker redelivers a dead worker's message after this (the default is hours)
LEASE_MS = 2000


@pytest.fixture(scope="module")
def server():
    with redis_server(password=PASSWORD) as srv:
        yield srv


@pytest.fixture
def store(server):
    client = redis.Redis.from_url(server.url)
    yield JobStore(client, lease_ms=LEASE_MS)
    client.close()


@pytest.fixture(scope="module")
def app(server):
    return make_app(WorkerSettings(server.url, visibility_timeout=VISIBILITY_S, lease_ms=LEASE_MS))


@contextmanager
def worker(url: str, name: str, logdir: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A `surge worker` process, ready to take tasks; killed at the end."""
    log = logdir / f"{name}.log"
    env = dict(os.environ, SURGE_VISIBILITY_TIMEOUT=str(VISIBILITY_S), SURGE_LEASE_MS=str(LEASE_MS))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "worker", "--cluster", url,
                                 "--hostname", name, *extra], stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"worker {name} not ready:\n{log.read_text()}"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def make_tree(root: Path, n_small: int = 12, big: int = 0) -> None:
    rnd = __import__("random").Random(5)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_small):
        p = root / f"d{i % 3}" / f"small{i}.dat"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(rnd.randrange(1, 40_000)))
    if big:
        (root / "big.bin").write_bytes(rnd.randbytes(big))


def options(src: Path, dst: Path, rate: str = "200m", **kw) -> dict:
    bps = float(rate[:-1]) * 1e6
    return job_options(SyncOptions(name="cl", local_dir=str(src), remote_dir=str(dst), preserve_mtime=True,
                                   target_rate=Rate(bits_per_second=bps), **kw))  # fmt: skip


def ref(root: Path, rel: str) -> FileRef:
    st = (root / rel).stat()
    return FileRef(rel, st.st_size, st.st_mtime_ns)


def ranges(root: Path, rel: str, count: int, prefix: str = "r") -> list[TaskSpec]:
    st = (root / rel).stat()
    out = []
    for k in range(count):
        start, end = st.st_size * k // count, st.st_size * (k + 1) // count
        r = RangeRef(rel, st.st_size, st.st_mtime_ns, k, count, start, end - start)
        out.append(TaskSpec(job="", task=f"{prefix}{k}", kind="range", queue=QUEUE_LARGE, range=r))
    return out


def batches(root: Path, size: int) -> list[TaskSpec]:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("small*"))
    return [TaskSpec(job="", task=f"b{i}", kind="batch", queue=QUEUE_SMALL,
                     files=tuple(ref(root, f) for f in files[i : i + size])) for i in range(0, len(files), size)]  # fmt: skip


def wait_job(store: JobStore, job: str, timeout: float = 40) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        j = store.job(job)
        if j["tasks_done"] + j["tasks_failed"] >= j["tasks_total"]:
            return j
        assert time.monotonic() < deadline, f"job not finished: {j} {store.task_states(job)}"
        time.sleep(0.1)


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_same_tree(src: Path, dst: Path) -> None:
    want = {str(p.relative_to(src)): digest(p) for p in src.rglob("*") if p.is_file()}
    got = {str(p.relative_to(dst)): digest(p) for p in dst.rglob("*") if p.is_file()}
    assert got == want  # byte for byte, and no .partial/.parts/.lock left behind
    for rel in want:
        # -t: times travel as float seconds (~0.2 µs of rounding at today's epoch)
        assert abs((dst / rel).stat().st_mtime_ns - (src / rel).stat().st_mtime_ns) < 2000


def test_batches_and_a_split_file_over_two_workers(server, store, app, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, n_small=12, big=6_000_000)
    dst.mkdir()
    tasks = batches(src, 4) + ranges(src, "big.bin", 3)
    # -l 30m: each range takes ~0.5 s, long enough for both workers to get work
    job = store.create_job("cl", options(src, dst, "30m"), tasks)
    with worker(server.url, "w1", tmp_path) as _a, worker(server.url, "w2", tmp_path) as _b:
        for t in tasks:
            dispatch(app, store.task(job, t.task))
        j = wait_job(store, job)
    assert (j["tasks_done"], j["tasks_failed"]) == (6, 0)
    assert (j["files_done"], j["files_failed"], j["bytes_done"]) == (13, 0, j["bytes_total"])
    assert_same_tree(src, dst)
    states = store.task_states(job)
    assert {s["state"] for s in states.values()} == {"succeeded"}
    assert {s["worker"] for s in states.values()} == {"w1", "w2"}
    events = store.pop_events(job, 100)
    big = [e for e in events if e["path"] == "big.bin"]
    assert sorted(e["status"] for e in big) == ["done", "part", "part"]  # committed exactly once
    done = next(e for e in big if e["status"] == "done")
    assert done["attrs"]["size"] == 6_000_000
    small = [e for e in events if e["path"] != "big.bin"]
    assert len(small) == 12 and {e["status"] for e in small} == {"done"}
    assert all(e["attrs"]["size"] == (src / e["path"]).stat().st_size for e in small)


def test_other_schema_version_fails_the_task_clearly(server, store, app, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, n_small=2)
    dst.mkdir()
    tasks = batches(src, 1)
    job = store.create_job("cl", options(src, dst), tasks)
    store.r.hset(key("job", job, "tasks"), "b1", store.r.hget(key("job", job, "tasks"), "b1").replace(
        b'"v":1', b'"v":7'))  # fmt: skip
    with worker(server.url, "wv", tmp_path):
        app.send_task(
            TASK_TRANSFER, args=[job, "b0"], kwargs={"v": SCHEMA_VERSION + 1}, queue=QUEUE_SMALL
        )
        app.send_task(
            TASK_TRANSFER, args=[job, "b1"], kwargs={"v": SCHEMA_VERSION}, queue=QUEUE_SMALL
        )
        j = wait_job(store, job, 20)
        time.sleep(0.5)  # a retry loop would show up as more deliveries
    assert (j["tasks_failed"], j["tasks_done"], j["files_done"]) == (2, 0, 0)
    b0, b1 = store.task_state(job, "b0"), store.task_state(job, "b1")
    assert b0["state"] == b1["state"] == "failed"
    assert "SchemaError" in b0["error"] and f"version {SCHEMA_VERSION + 1}" in b0["error"]
    assert "SchemaError" in b1["error"] and "version 7" in b1["error"]
    assert list(dst.iterdir()) == []  # nothing sent by a worker that cannot read the task


def metric(port: int, series: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    line = next(ln for ln in text.splitlines() if ln.startswith(series + " "))
    return float(line.split()[1])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kill_9_mid_range_resumes_on_another_worker(server, store, app, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    size = 8_000_000
    make_tree(src, n_small=0, big=size)
    dst.mkdir()
    [task] = ranges(src, "big.bin", 1)
    # -l 24m: ~2.7 s for the whole range, inside the test's task time limit (3/4 of VISIBILITY_S)
    job = store.create_job("cl", options(src, dst, "24m"), [task])
    port = free_port()
    with worker(server.url, "victim", tmp_path) as victim:
        dispatch(app, store.task(job, task.task))
        deadline = time.monotonic() + 20
        while int(store.task_state(job, task.task).get("acked") or 0) < size // 2:
            assert time.monotonic() < deadline, store.task_state(job, task.task)
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    acked = int(store.task_state(job, task.task)["acked"])
    assert (dst / "big.bin").exists() is False and (dst / "big.bin.partial").exists()
    with worker(server.url, "rescuer", tmp_path, "--metrics-port", str(port)):
        j = wait_job(store, job, 40)  # redelivered after the visibility timeout
        resent = metric(port, "surge_sent_bytes_total")
        succeeded = metric(port, 'surge_worker_tasks_total{outcome="succeeded"}')
    print(f"kill -9 at {acked} of {size} bytes acknowledged; the rescuer sent {resent:.0f}")
    assert (j["tasks_done"], j["files_done"], j["bytes_done"]) == (1, 1, size)
    state = store.task_state(job, task.task)
    assert state["worker"] == "rescuer" and state["attempts"] >= 2 and succeeded == 1
    assert resent <= size - acked + 200_000 < 0.6 * size  # resumed, not started over
    assert_same_tree(src, dst)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", "worker", *args], capture_output=True, text=True,
                          timeout=30, env=env)  # fmt: skip


def test_unreachable_broker_and_wrong_password_are_one_clear_line(server):
    res = cli("--cluster", f"redis://127.0.0.1:{free_port()}/0")
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "cannot reach Redis at 127.0.0.1" in res.stderr
    res = cli("--cluster", server.url.replace(PASSWORD, "wrong"))
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "refused the password" in res.stderr and "wrong" not in res.stderr.replace(
        "wrong password", ""
    )
    env = dict(os.environ, SURGE_BROKER_URL=server.url.replace(f":{PASSWORD}@", "@"))
    res = cli(env=env)
    assert (
        res.returncode == 1
        and "requires a password" in res.stderr
        and "SURGE_BROKER_URL" in res.stderr
    )


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", "0"], "--concurrency: 0 out of range"),
    (["--metrics-port", "http"], "--metrics-port: 'http' is not a whole number"),
    (["--queues", "small,tiny"], "--queues: unknown queue 'tiny'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])  # fmt: skip
def test_bad_options_exit_2_naming_the_option(args, message):
    res = cli(*args, "--cluster", "redis://127.0.0.1:1/0")
    assert res.returncode == 2 and message in res.stderr and res.stderr.count("\n") == 1


def test_help():
    res = cli("-h")
    assert res.returncode == 0 and "--cluster URL" in res.stdout and "--metrics-port" in res.stdout


# -- the executor alone (no Celery): idempotent redelivery, options --------------------------------


def test_redelivered_batch_resends_nothing_and_reports_every_file(store, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, n_small=5)
    dst.mkdir()
    [task] = batches(src, 10)
    job = store.create_job("cl", options(src, dst), [task])
    spec = store.task(job, task.task)
    # A first delivery that committed every file and died before finishing the task:
    first = run_batch(spec, store.job(job)["options"], store, "w:1")
    assert first.files_done == 5 and first.sender["bytes_sent"] > 0
    inodes = {p: p.stat().st_ino for p in dst.rglob("*") if p.is_file()}
    again = run_task(spec, store.job(job)["options"], store, "w:2")
    assert again is not None and again.files_done == 5 and again.sender.get("bytes_sent", 0) == 0
    assert {p: p.stat().st_ino for p in dst.rglob("*") if p.is_file()} == inodes  # not rewritten
    assert all(e["attrs"]["size"] > 0 for e in again.events)
    assert (
        run_task(spec, store.job(job)["options"], store, "w:3") is None
    )  # finished: not run again
    assert store.job(job)["files_done"] == 5  # counted once
    assert_same_tree(src, dst)


def test_changed_source_is_a_failed_file_not_a_wrong_one(store, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, n_small=3)
    dst.mkdir()
    [task] = batches(src, 10)
    job = store.create_job("cl", options(src, dst), [task])
    changed = src / task.files[0].path
    changed.write_bytes(b"new content after planning")
    out = run_task(store.task(job, task.task), store.job(job)["options"], store, "w:1")
    assert out is not None and (out.files_done, out.files_failed) == (2, 1)
    failed = next(e for e in out.events if e["status"] == "failed")
    assert failed["path"] == task.files[0].path and "changed since planning" in failed["error"]
    assert not (dst / task.files[0].path).exists()
    state = store.task_state(job, task.task)
    assert state["state"] == "failed" and "1 file(s) failed" in state["error"]


def test_job_options_round_trip_and_refuse_passwords(tmp_path):
    opts = SyncOptions(name="p", local_dir="/data", remote_dir="/backup", host="far", user="u", keys=("/k",),
                       token="s3cr3t-tok", target_rate=Rate(bits_per_second=5e8), policy="high", udp_port=34000,
                       preserve_mtime=True, datagram_size=1400, checksum="md5")  # fmt: skip
    d = job_options(opts)
    assert "s3cr3t" not in __import__("json").dumps(d)  # the token stays out of Redis
    back = sync_options(__import__("json").loads(__import__("json").dumps(d)), env={"SURGE_TOKEN": "s3cr3t-tok"})
    with pytest.raises(JobOptionsError, match="SURGE_TOKEN"):
        sync_options(d, env={})
    for name in ("local_dir", "remote_dir", "host", "user", "keys", "token", "target_rate", "policy",
                 "udp_port", "preserve_mtime", "datagram_size", "checksum", "min_rate"):  # fmt: skip
        assert getattr(back, name) == getattr(opts, name), name
    with pytest.raises(JobOptionsError, match="password"):
        job_options(SyncOptions(name="p", local_dir="/a", remote_dir="/b", host="h", password="x"))
    with pytest.raises(JobOptionsError, match="-K pull"):
        job_options(SyncOptions(name="p", local_dir="/a", remote_dir="/b", direction="pull"))
    with pytest.raises(JobOptionsError, match="-O"):
        sync_options({**d, "udp_port": 0}, env={"SURGE_TOKEN": "t"})


def test_stale_part_state_of_another_version_is_not_assembled(store, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, n_small=0, big=3_000_000)
    dst.mkdir()
    # Left by an older transfer of the same name and size: garbage data, part 0 marked done.
    (dst / "big.bin.partial").write_bytes(b"\xee" * 3_000_000)
    (dst / "big.bin.partial.parts").write_text(
        '{"count": 2, "size": 3000000, "mtime": 1.0, "done": [0]}'
    )
    r0, r1 = ranges(src, "big.bin", 2)
    job = store.create_job("cl", options(src, dst), [r0, r1])
    out = run_task(store.task(job, "r1"), store.job(job)["options"], store, "w:1")
    assert out is not None and [e["status"] for e in out.events] == ["part"]  # not assembled
    assert not (dst / "big.bin").exists()
    out = run_task(store.task(job, "r0"), store.job(job)["options"], store, "w:1")
    assert out is not None and [e["status"] for e in out.events] == ["done"]
    assert_same_tree(src, dst)


def test_bookkeeping_ops_run_once_and_again_harmlessly(store, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (dst / "old").mkdir(parents=True)
    (dst / "old" / "f.txt").write_text("x")
    (dst / "gone.txt").write_text("y")
    ops = ({"op": "mkdir", "path": "new/deep"}, {"op": "rename", "path": "old/f.txt", "to": "new/f.txt"},
           {"op": "attrs", "path": "new/f.txt", "mtime_ns": 1_000_000_000_000_000_000, "mode": 0o600},
           {"op": "delete", "path": "gone.txt"}, {"op": "delete", "path": "never-there"})  # fmt: skip
    spec = TaskSpec(job="", task="ops", kind="ops", queue="surge.bookkeeping", ops=ops)
    job = store.create_job("cl", options(src, dst), [spec])
    spec = store.task(job, "ops")
    run = __import__("workers.cluster.ops", fromlist=["run_ops"]).run_ops
    for _ in range(2):  # a redelivery runs them again: same result, no failure
        out = run(spec, store.job(job)["options"], store, "w:1")
        assert [e["status"] for e in out.events] == ["done"] * 5, out.events
    assert (dst / "new" / "deep").is_dir() and not (dst / "gone.txt").exists()
    st = (dst / "new" / "f.txt").stat()
    assert st.st_mtime_ns == 1_000_000_000_000_000_000 and st.st_mode & 0o777 == 0o600
    attrs = next(e for e in out.events if e["op"] == "attrs")["attrs"]
    assert attrs["mtime_ns"] == st.st_mtime_ns


def test_unreachable_far_end_is_a_retry_with_the_reason_recorded(store, tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_small=1)
    [task] = batches(src, 10)
    opts = options(
        src, tmp_path / "dst", host="127.0.0.1", ssh_port=free_port(), keys=("/nonexistent",)
    )
    job = store.create_job("cl", opts, [task])
    with pytest.raises(Retry, match="far end unreachable"):
        run_task(store.task(job, task.task), store.job(job)["options"], store, "w:1")
    state = store.task_state(job, task.task)
    assert state["state"] == "pending" and "far end unreachable" in state["error"]
    assert store.lease_holder(job, task.task) is None  # released for the next attempt

"""Cluster mode end to end: a private redis-server, three real `surge worker` processes, a real
`surge server` far end (asyncssh, a UDP port range), and `surge sync --cluster` /
`surge coordinator` / `surge status` as subprocesses. Files are compared byte for byte."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.cluster.jobs import JobStore
from common.snapshot import Entry
from coordinator.cluster.dispatch import JobFollower
from coordinator.cluster.plan import PlanLimits, plan_tasks
from coordinator.cp.common import CopyError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_server import RedisServer, redis_server
from sshd import FarEnd, free_tcp_port, surge_server

MiB = 1 << 20
SURGE = [sys.executable, "-m", "coordinator.cli"]
WORKERS = ("w1", "w2", "w3")


def surge_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SURGE_BROKER_URL", "SURGE_PASS")}
    return {**env, "SURGE_PAIR_LOCK_TTL_S": "3", **extra}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(password="clu5ter-secret") as srv:
        yield srv


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarEnd]:
    base = tmp_path_factory.mktemp("far")
    (base / "docroot").mkdir()
    with surge_server(base / "server", docroot=base / "docroot", udp_ports=64) as end:
        yield end


@pytest.fixture(scope="module")
def workers(
    broker: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[subprocess.Popen[bytes]]]:
    logs = tmp_path_factory.mktemp("workers")
    procs = []
    for name in WORKERS:
        with open(logs / f"{name}.log", "wb") as fh:
            procs.append(subprocess.Popen([*SURGE, "worker", "--cluster", broker.url, "--hostname", name],
                                          stdout=fh, stderr=fh, env=surge_env()))  # fmt: skip
    yield procs
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def r(broker: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(broker.url)


def make_tree(root: Path, small: int, large: list[int], seed: int) -> dict[str, bytes]:
    rnd = random.Random(seed)
    files = {f"d{i % 5}/s{i:04d}.bin": rnd.randbytes(rnd.randint(1, 4096)) for i in range(small)}
    files |= {f"big/l{i}.bin": rnd.randbytes(size) for i, size in enumerate(large)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".surge" not in p.parts}  # fmt: skip


def sync_argv(far: FarEnd, name: str, src: Path, dst: str, url: str, *extra: str) -> list[str]:
    return [*SURGE, "sync", "-N", name, "-d", str(src), "-r", far.remote(dst), *far.auth(), "-l", "200m",
            "--create-dir", "--cluster", url, *extra]  # fmt: skip


def run(argv: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=surge_env(**env)
    )


def jobs_of(r: redis.Redis, pair: str) -> list[str]:
    return [j.decode() for j in r.lrange(f"surge:pair:{pair}:jobs", 0, -1)]


def sent_by_job(r: redis.Redis, job: str) -> list[str]:
    """Paths of the job's tasks that a worker ran to success (each range counted)."""
    out = []
    for tid, raw in r.hgetall(f"surge:job:{job}:tasks").items():
        if r.hget(f"surge:job:{job}:task:{tid.decode()}", "state") != b"succeeded":
            continue
        spec = json.loads(raw)
        out += [f["path"] for f in spec["files"]] + (
            [spec["range"]["path"]] if spec["range"] else []
        )
    return out


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_tree_of_small_and_split_files_arrives_on_three_workers(
    broker, far, workers, r, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    files = make_tree(src, 240, [3 * MiB, 2 * MiB + 12345, 5 * MiB], seed=1)
    done = run(
        sync_argv(
            far, "tree", src, "/tree", broker.url, "--multi-session-threshold", "512k", "-k", "sha1"
        )
    )
    assert done.returncode == 0, done.stderr
    assert listing(far.docroot / "tree") == files  # type: ignore[operator]
    synced = {
        line.split()[0].lstrip("/")
        for line in done.stdout.splitlines()
        if line.endswith("SYNCHRONIZED")
    }
    assert set(files) <= synced
    assert "broker" not in done.stderr and "clu5ter-secret" not in done.stdout + done.stderr
    (job,) = jobs_of(r, "tree")
    status = run([*SURGE, "status", "-N", "tree", "--cluster", broker.url, "--json"])
    assert status.returncode == 0, status.stderr
    (prog,) = json.loads(status.stdout)["jobs"]
    total = sum(len(d) for d in files.values())
    assert (prog["job"], prog["state"], prog["files_done"], prog["files_total"]) == (
        job,
        "done",
        len(files),
        len(files),
    )
    assert prog["bytes_done"] == prog["bytes_total"] == total
    assert {w.split("@")[-1] for w in prog["workers"]} == set(WORKERS) and all(
        n > 0 for n in prog["workers"].values()
    )
    ranges = [json.loads(v)["range"] for v in r.hgetall(f"surge:job:{job}:tasks").values()]
    assert sum(1 for x in ranges if x) == 6 + 5 + 10  # 512 KiB parts of 3 MiB, 2 MiB+, 5 MiB
    text = run([*SURGE, "status", "-N", "tree", "--cluster", broker.url]).stdout
    assert text.startswith(f"job {job} (") and " done: files 243/243 (0 failed)" in text
    assert sum(line.startswith("  worker ") for line in text.splitlines()) == 3
    again = run(sync_argv(far, "tree", src, "/tree", broker.url))
    assert again.returncode == 0 and jobs_of(r, "tree") == [job], again.stderr  # nothing to send


def test_killed_coordinator_rerun_sends_nothing_twice(broker, far, workers, r, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    files = make_tree(src, 60, [4 * MiB] * 6, seed=2)
    argv = sync_argv(
        far, "killed", src, "/killed", broker.url, "--multi-session-threshold", "1m", "-l", "40m"
    )
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=surge_env()
    )
    wait_for(lambda: jobs_of(r, "killed") and int(r.hget(f"surge:job:{jobs_of(r, 'killed')[0]}", "tasks_done") or 0) >= 3,
             60, "three finished tasks")  # fmt: skip
    proc.kill()
    proc.wait()
    (first,) = jobs_of(r, "killed")
    assert r.hget(f"surge:job:{first}", "state") == b"running"
    wait_for(
        lambda: not r.exists("surge:snap:killed:lock"), 10, "the dead run's pair lock to expire"
    )
    done = run(
        sync_argv(far, "killed", src, "/killed", broker.url, "--multi-session-threshold", "1m")
    )
    assert done.returncode == 0, done.stderr
    assert listing(far.docroot / "killed") == files  # type: ignore[operator]
    assert r.hget(f"surge:job:{first}", "state") == b"done"  # adopted and closed by the rerun
    sent = [p for j in jobs_of(r, "killed") for p in set(sent_by_job(r, j))]
    twice = sorted(p for p in set(sent) if sent.count(p) > 1)
    assert not twice and set(sent) == set(files), (
        twice,
        jobs_of(r, "killed"),
    )  # no file in two jobs


def test_a_change_of_kind_is_replaced_at_the_far_end(broker, far, workers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file that became a directory, and a directory that became a file, through the cluster:
    the coordinator's bookkeeping removes the old entry before the new one is made."""
    src = tmp_path / "src"
    (src / "was_dir").mkdir(parents=True)
    (src / "was_dir" / "inner.bin").write_bytes(b"inner")
    (src / "was_file").write_bytes(b"a file")
    assert run(sync_argv(far, "kinds", src, "/kinds", broker.url)).returncode == 0
    (src / "was_dir" / "inner.bin").unlink()
    (src / "was_dir").rmdir()
    (src / "was_dir").write_bytes(b"now a file")
    (src / "was_file").unlink()
    (src / "was_file").mkdir()
    (src / "was_file" / "deep.bin").write_bytes(b"now inside a directory")
    done = run(sync_argv(far, "kinds", src, "/kinds", broker.url))
    assert done.returncode == 0, done.stderr
    assert listing(far.docroot / "kinds") == {"was_dir": b"now a file",  # type: ignore[operator]
                                              "was_file/deep.bin": b"now inside a directory"}  # fmt: skip


def test_redis_restart_mid_job_fails_clearly_and_corrupts_nothing(tmp_path, far) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    files = make_tree(src, 20, [4 * MiB] * 4, seed=3)
    with redis_server() as srv:
        logs = tmp_path / "w.log"
        with open(logs, "wb") as fh:
            worker = subprocess.Popen([*SURGE, "worker", "--cluster", srv.url, "--hostname", "solo"],
                                      stdout=fh, stderr=fh, env=surge_env())  # fmt: skip
        try:
            r = redis.Redis.from_url(srv.url)
            argv = sync_argv(
                far,
                "restart",
                src,
                "/restart",
                srv.url,
                "--multi-session-threshold",
                "1m",
                "-l",
                "20m",
            )
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=surge_env()
            )
            wait_for(
                lambda: (
                    bool(r.keys("surge:job:*:task:*"))
                    and any(
                        r.hget(k, "state") == b"succeeded" for k in r.keys("surge:job:*:task:*")
                    )
                ),
                60,
                "a finished task",
            )
            srv.restart()
            _out, err = proc.communicate(timeout=90)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=20)
    assert proc.returncode == 1, err
    assert "Redis" in err and len([x for x in err.splitlines() if "error" in x]) <= 3, err
    arrived = listing(far.docroot / "restart")  # type: ignore[operator]
    partial = [p for p in arrived if ".partial" in p]  # the far end's staging, never a final name
    assert all(arrived[p] == files[p] for p in arrived if p not in partial)


@pytest.mark.parametrize(("url", "needle"), [
    ("redis://127.0.0.1:{port}/0", "cannot reach Redis"),
    ("redis://:b4dpw@127.0.0.1:{redis}/0", "refused the password"),
])  # fmt: skip
def test_bad_broker_is_one_clear_line(broker, tmp_path, url: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    url = url.format(port=free_tcp_port(), redis=broker.port)
    argv = [
        *SURGE,
        "sync",
        "-N",
        "bad",
        "-d",
        str(tmp_path),
        "-r",
        str(tmp_path / "x"),
        "--cluster",
        url,
    ]
    for cmd in (argv, [*SURGE, "status", "-N", "bad", "--cluster", url]):
        done = run(cmd, timeout=30)
        assert done.returncode == 1 and needle in done.stderr and "b4dpw" not in done.stderr, (
            done.stderr
        )
        assert len(done.stderr.strip().splitlines()) == 1


def test_bare_cluster_takes_the_url_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"redis://127.0.0.1:{free_tcp_port()}/0"
    argv = [
        *SURGE,
        "sync",
        "-N",
        "env",
        "-d",
        str(tmp_path),
        "-r",
        str(tmp_path / "x"),
        "--cluster",
    ]
    done = run(argv, timeout=30, SURGE_BROKER_URL=url)
    assert (
        done.returncode == 1
        and "cannot reach Redis" in done.stderr
        and "SURGE_BROKER_URL" in done.stderr
    )


@pytest.mark.parametrize(("extra", "needle"), [
    (["-K", "pull"], "--cluster: -K pull"),
    (["-K", "bidi"], "--cluster: -K bidi"),
    (["-w", "pw"], "--cluster: a password"),
    (["--detach", "-W", "tok"], "--detach: a token (-W) on the command line would be stored in Redis"),
])  # fmt: skip
def test_cluster_option_errors_exit_2(tmp_path, extra: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
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
    done = run(argv, timeout=30)
    assert (
        done.returncode == 2
        and needle in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    )


def coordinator(url: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen([*SURGE, "coordinator", "--cluster", url, *extra], stdout=fh, stderr=fh,
                                env=surge_env())  # fmt: skip


def test_detached_job_survives_a_killed_coordinator_service(
    broker, far, workers, r, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    files = make_tree(src, 50, [4 * MiB] * 4, seed=4)
    argv = sync_argv(
        far,
        "svc",
        src,
        "/svc",
        broker.url,
        "--detach",
        "--multi-session-threshold",
        "1m",
        "-l",
        "40m",
    )
    sub = run(argv)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip()
    (request,) = [json.loads(x) for x in r.lrange("surge:jobs:submitted", 0, -1)]
    assert request["id"] == job and not {"--cluster", "--detach"} & set(request["argv"])
    assert "clu5ter-secret" not in json.dumps(request)
    first = coordinator(broker.url, tmp_path / "coord.log")
    wait_for(
        lambda: int(r.hget(f"surge:job:{job}", "tasks_done") or 0) >= 2, 60, "two finished tasks"
    )
    first.kill()
    first.wait()
    port = free_tcp_port()
    second = coordinator(broker.url, tmp_path / "coord.log", "--metrics-port", str(port))
    try:
        wait_for(lambda: r.llen("surge:coordinator:running") == 0, 90, "the resumed job")
        assert listing(far.docroot / "svc") == files  # type: ignore[operator]
        sent = [p for j in jobs_of(r, "svc") for p in set(sent_by_job(r, j))]
        assert sorted(sent) == sorted(
            files
        )  # nothing sent twice across the killed and the resumed run
        st = run([*SURGE, "status", "-N", "svc", "--cluster", broker.url, "--json"])
        states = {p["job"]: p["state"] for p in json.loads(st.stdout)["jobs"]}
        assert st.returncode == 0 and states[job] == "done" and set(states.values()) == {"done"}, (
            st.stdout
        )
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for name in ("surge_jobs_active", 'surge_tasks{state="succeeded"}', 'surge_queue_messages{queue="small"}',
                     "surge_files_pending", "surge_snapshot_entries"):  # fmt: skip
            assert name in text
        assert r.llen("surge:jobs:submitted") == 0
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)


def _follow(
    r: redis.Redis, job: str, stall_s: float
) -> tuple[JobFollower, list[str], dict, dict, dict]:  # type: ignore[type-arg]
    """A job of one small file and a 3 MiB file in three ranges, and its follower; the test
    plays the workers through JobStore, as `surge worker` does."""
    jobs = JobStore(r)
    tasks = plan_tasks(job, [("a", 10, 1), ("b", 3 * MiB, 2)], PlanLimits(threshold=MiB))
    jobs.create_job("follow", {"name": "follow"}, tasks, job_id=job)
    sent: list[str] = []
    done: dict[str, dict] = {}  # type: ignore[type-arg]
    failed: dict[str, str] = {}
    out: dict[str, object] = {}
    far = Entry("b", "file", 3 * MiB, 2, 0o644, 7, 1)
    follower = JobFollower(jobs, job, tasks, lambda t: sent.append(t.task),
                           on_done=lambda p, attrs, spec: done.__setitem__(p, attrs),
                           on_failed=failed.__setitem__, stat=lambda p: far if p == "b" else None,
                           stall_s=stall_s)  # fmt: skip
    return follower, sent, done, failed, out


def test_follower_resends_lost_tasks_finalizes_ranges_and_reports_failures(broker, r) -> None:  # type: ignore[no-untyped-def]
    follower, sent, done, failed, out = _follow(r, "f0110e", stall_s=0.3)
    thread = threading.Thread(target=lambda: out.setdefault("job", follower.run()))
    thread.start()
    wait_for(lambda: len(sent) >= 4, 20, "the lost tasks to be sent again")  # no worker, no lease
    jobs = follower.jobs
    batch, *ranges = sorted(follower.tasks.values(), key=lambda t: t.kind)
    jobs.finish_task("f0110e", batch.task, False, "far end: disk full",
                     events=[{"task": batch.task, "path": "a", "status": "failed", "error": "far end: disk full"}])  # fmt: skip
    for i, t in enumerate(ranges):
        status = "done" if i == len(ranges) - 1 else "part"
        jobs.finish_task(
            "f0110e", t.task, True, events=[{"task": t.task, "path": "b", "status": status}]
        )
    thread.join(20)
    assert not thread.is_alive() and out["job"]["tasks_done"] == 3  # type: ignore[index]
    assert failed == {"a": "far end: disk full"}
    assert done == {
        "b": {"size": 3 * MiB, "mtime_ns": 2, "mode": 0o644, "ino": 7, "dev": 1, "nlink": 1}
    }
    assert sorted(set(sent)) == sorted(follower.tasks)


def test_follower_fails_clearly_when_the_job_vanishes(broker, r) -> None:  # type: ignore[no-untyped-def]
    follower, _sent, _done, _failed, _out = _follow(r, "f0110f", stall_s=60)
    r.delete("surge:job:f0110f")  # what a Redis restarted without persistence looks like
    with pytest.raises(CopyError, match="vanished from Redis"):
        follower.run()

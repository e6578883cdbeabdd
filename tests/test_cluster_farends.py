"""A worker keeps its far-end connection across tasks (workers/cluster/farends.py): one SSH
session and one `surge agent` for many batch tasks, a dead kept connection replaced before the
next task runs (the task never sees it), and nothing left running when the worker stops.

Real parts: a private redis-server, a `surge server` far end (asyncssh; one `surge agent` child
per SSH session, counted through /proc), real `surge worker` processes, and the executor alone
with a local agent."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from common.cluster.jobs import JobStore
from tests.redis_server import redis_server
from tests.sshd import surge_server
from tests.test_cluster_worker import (
    LEASE_MS,
    assert_same_tree,
    batches,
    free_port,
    make_tree,
    metric,
    options,
    worker,
)
from workers.cluster.app import WorkerSettings, dispatch, make_app
from workers.cluster.executor import run_task
from workers.cluster.farends import FarEnds


@pytest.fixture(scope="module")
def server():
    with redis_server() as srv:
        yield srv


@pytest.fixture
def store(server):
    client = redis.Redis.from_url(server.url)
    yield JobStore(client, lease_ms=LEASE_MS)
    client.close()


@pytest.fixture(scope="module")
def app(server):
    return make_app(WorkerSettings(server.url, visibility_timeout=5, lease_ms=LEASE_MS))


@pytest.fixture(scope="module")
def far(tmp_path_factory):
    base = tmp_path_factory.mktemp("far")
    (base / "docroot").mkdir()
    with surge_server(base / "server", docroot=base / "docroot", udp_ports=64) as end:
        yield end


def agents_of(parent: int) -> list[int]:
    """Pids of the `surge agent` processes whose parent is `parent` (from /proc)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"workers.agent" in argv:
            out.append(int(pid))
    return out


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def remote_options(far, src: Path, dst: str) -> dict:  # type: ignore[no-untyped-def]
    return options(src, Path(dst), host="127.0.0.1", user="surge", ssh_port=far.port,
                   keys=(str(far.key()),))  # fmt: skip


def run_one(app, store: JobStore, job: str, task: str) -> dict:  # type: ignore[no-untyped-def]
    """Dispatch one task of `job` and wait for it: tasks one after the other, so each could
    reuse the connection the one before it kept."""
    dispatch(app, store.task(job, task))
    wait_until(lambda: store.task_state(job, task).get("state") in ("succeeded", "failed"), 40,
               f"task {task}")  # fmt: skip
    return store.task_state(job, task)


def test_worker_reuses_one_ssh_session_and_agent_and_closes_it_at_shutdown(
    server, store, app, far, tmp_path
):
    src = tmp_path / "src"
    make_tree(src, n_small=12)
    tasks = batches(src, 3)  # four batch tasks
    job = store.create_job("fe", remote_options(far, src, "/reuse"), tasks)
    port = free_port()
    with worker(server.url, "keeper", tmp_path, "--metrics-port", str(port)) as proc:
        seen = set()
        for t in tasks:
            state = run_one(app, store, job, t.task)
            assert state["state"] == "succeeded" and state["attempts"] == 1, state
            seen.update(agents_of(far.proc.pid))
        assert len(agents_of(far.proc.pid)) == 1 and len(seen) == 1  # one agent for all tasks
        assert metric(port, 'surge_worker_far_end_connections_total{how="opened"}') == 1
        assert (
            metric(port, 'surge_worker_far_end_connections_total{how="reused"}') == len(tasks) - 1
        )
        proc.send_signal(signal.SIGTERM)  # a warm shutdown closes the kept connection
        assert proc.wait(30) == 0
        wait_until(lambda: not agents_of(far.proc.pid), 10, "the agent to exit")
    log = (tmp_path / "keeper.log").read_text()
    assert "closed 1 kept far-end connection(s)" in log
    assert "small0.dat" not in log  # no line per file sent (only with -D)
    assert_same_tree(src, far.docroot / "reuse")  # type: ignore[operator]
    assert store.job(job)["files_done"] == 12


def test_a_dead_kept_connection_is_replaced_before_the_task_runs(server, store, app, far, tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_small=6)
    first, second = batches(src, 3)
    job = store.create_job("fe", remote_options(far, src, "/dead"), [first, second])
    port = free_port()
    with worker(server.url, "phoenix", tmp_path, "--metrics-port", str(port)):
        assert run_one(app, store, job, first.task)["state"] == "succeeded"
        (agent,) = agents_of(far.proc.pid)
        os.kill(agent, signal.SIGKILL)  # the far end drops the session while the worker idles
        wait_until(lambda: not agents_of(far.proc.pid), 10, "the agent to die")
        state = run_one(app, store, job, second.task)
        assert state["state"] == "succeeded" and state["attempts"] == 1  # not a retry
        assert metric(port, 'surge_worker_far_end_connections_total{how="dead"}') == 1
        assert metric(port, 'surge_worker_far_end_connections_total{how="opened"}') == 2
        assert len(agents_of(far.proc.pid)) == 1
    assert_same_tree(src, far.docroot / "dead")  # type: ignore[operator]


def test_executor_reuse_expiry_and_close_with_a_local_agent(store, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, n_small=9)
    dst.mkdir()
    tasks = batches(src, 3)
    job = store.create_job("fe", options(src, dst), tasks)
    opts = store.job(job)["options"]
    pool = FarEnds(idle_s=0.5)
    try:
        for t in tasks[:2]:
            assert run_task(store.task(job, t.task), opts, store, "w:1", far=pool) is not None
        assert pool.statistics() == {"opened": 1, "reused": 1, "dead": 0, "idle": 1}
        (agent,) = agents_of(os.getpid())
        wait_until(lambda: pool.idle() == 0, 5, "the idle connection to expire")
        wait_until(lambda: agent not in agents_of(os.getpid()), 10, "the expired agent to exit")
        assert run_task(store.task(job, tasks[2].task), opts, store, "w:1", far=pool) is not None
        assert (
            pool.statistics()["opened"] == 2 and pool.statistics()["dead"] == 0
        )  # expired, not dead
    finally:
        pool.close()
    wait_until(lambda: not agents_of(os.getpid()), 10, "the agents to exit after close()")
    assert pool.idle() == 0
    assert_same_tree(src, dst)


def _job_options(store, tmp_path, n_small):  # type: ignore[no-untyped-def]
    """The options of a fresh job over a tree of `n_small` files, as a worker reads them."""
    from workers.cluster.outcome import options_of

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, n_small=n_small)
    dst.mkdir()
    return options_of(store.job(store.create_job("fe", options(src, dst), batches(src, n_small)))["options"])


def test_a_failed_session_does_not_go_back_to_the_pool(store, tmp_path):
    opts = _job_options(store, tmp_path, 2)
    pool = FarEnds()
    with pytest.raises(RuntimeError), pool.session(opts):
        raise RuntimeError("the task failed mid-session")
    assert pool.statistics()["idle"] == 0
    wait_until(lambda: not agents_of(os.getpid()), 10, "the agent of the failed session to exit")
    pool.close()


def test_a_session_in_use_when_the_pool_closes_is_closed_at_its_end(store, tmp_path):
    opts = _job_options(store, tmp_path, 1)
    pool = FarEnds()
    with pool.session(opts):
        assert len(agents_of(os.getpid())) == 1
        pool.close()  # the worker stops while a task still runs
    assert pool.idle() == 0  # not kept after close()
    wait_until(lambda: not agents_of(os.getpid()), 10, "the agent to exit")

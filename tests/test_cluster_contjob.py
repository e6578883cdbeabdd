"""The Redis side of continuous cluster jobs against a real redis-server: pruning a finished
batch's tasks, the job record (open, report, cancel, resume), the gauges over several jobs,
`surge status` for a continuous job, and what adopting a left-over job does to it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import redis

from common import metrics
from common.cluster.jobs import JobStore
from common.cluster.schema import QUEUE_SMALL, FileRef, TaskSpec, key
from coordinator.cluster.contjob import ContinuousRecord, LagGauges, counted_kind
from coordinator.cluster.dispatch import CeleryDispatcher
from coordinator.cluster.status import job_progress, render
from coordinator.continuous.loop import LoopStats
from coordinator.sync.transfer import TransferRequest
from tests.redis_server import redis_server


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    with redis_server() as srv:
        yield srv


@pytest.fixture
def r(server) -> Iterator[redis.Redis]:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    yield client
    client.close()


def batch(task: str, *sizes: int) -> TaskSpec:
    files = tuple(FileRef(f"{task}/f{i}", s, 1) for i, s in enumerate(sizes))
    return TaskSpec(job="", task=task, kind="batch", queue=QUEUE_SMALL, files=files)


def test_pruning_a_finished_batch_keeps_the_counters_and_the_bytes_per_worker(r) -> None:  # type: ignore[no-untyped-def]
    jobs = JobStore(r)
    jobs.create_job("p", {"name": "p"}, [batch("1.0", 100, 200), batch("1.1", 50)], job_id="c0")
    for task, worker in (("1.0", "w1"), ("1.1", "w2")):
        jobs.start_task("c0", task, worker)
        assert jobs.acquire_lease("c0", task, worker)
    jobs.progress("c0", "1.1", 10)
    jobs.finish_task("c0", "1.0", True)
    jobs.finish_task("c0", "1.1", False, "far end: disk full")
    jobs.prune_tasks("c0", ["1.0", "1.1"])
    assert (
        not r.keys("surge:job:c0:task:*")
        and not r.keys("surge:lease:*")
        and not r.hlen(key("job", "c0", "tasks"))
    )
    assert jobs.worker_bytes("c0") == {"w1": 300, "w2": 10}
    job = jobs.job("c0")
    assert (job["tasks_done"], job["tasks_failed"], job["files_done"], job["bytes_done"]) == (
        1,
        1,
        2,
        300,
    )


def test_the_record_adds_up_over_runs_and_honours_a_cancel(r) -> None:  # type: ignore[no-untyped-def]
    jobs = JobStore(r)
    first = ContinuousRecord(jobs, "c1")
    assert first.open("p", {"name": "p"}, detached=True)
    job = jobs.job("c1")
    assert (job["continuous"], job["detached"], job["state"], job["activity"]) == (
        1,
        1,
        "running",
        "starting",
    )
    first.report(LoopStats("syncing", 3, 100.0, batches=2), 4.0, {"sent": 5, "deleted": 1})
    first.report(LoopStats("watching", 0, None, batches=3), 0.0, {"sent": 7, "deleted": 1})
    first.close("stopped")
    again = ContinuousRecord(jobs, "c1")  # the coordinator restarted: its counts start at 0
    assert again.open("p", {"name": "p"}, detached=True)
    again.report(LoopStats("syncing", 2, 50.0, batches=1), 2.5, {"sent": 1, "errors": 1})
    job = jobs.job("c1")
    assert (job["sent"], job["deleted"], job["errors"], job["batches"]) == (8, 1, 1, 4)
    assert (
        job["changes_pending"] == 2
        and abs(job["oldest_change_ms"] / 1000 - (time.time() - 2.5)) < 2
    )
    assert not again.cancel_requested()
    r.hset(key("job", "c1"), "cancel", 1)
    assert again.cancel_requested()
    again.close("stopped")
    assert not ContinuousRecord(jobs, "c1").open(
        "p", {"name": "p"}, detached=True
    )  # cancelled while down
    assert jobs.job("c1")["state"] == "cancelled" and "c1" not in jobs.active_jobs()


def test_gauges_are_the_sum_of_pending_and_the_max_of_lags() -> None:
    gauges = LagGauges()
    gauges.update("a", 3, 2.0)
    gauges.update("b", 1, 7.5)
    assert (metrics.CHANGES_PENDING._value.get(), metrics.SYNC_LAG._value.get()) == (4, 7.5)
    assert metrics.CONTINUOUS_JOBS._value.get() == 2
    gauges.remove("b")
    assert (metrics.CHANGES_PENDING._value.get(), metrics.SYNC_LAG._value.get()) == (3, 2.0)
    gauges.remove("a")
    assert (metrics.CHANGES_PENDING._value.get(), metrics.SYNC_LAG._value.get()) == (0, 0.0)


def test_counted_status_lines() -> None:
    assert [counted_kind(s) for s in ("SYNCHRONIZED", "SYNCHRONIZED(del)", "SYNCHRONIZED(mov)", "ERROR: x",
                                      "SYNCHRONIZED(skp)")] == ["sent", "deleted", "moved", "errors", None]  # fmt: skip


def test_status_of_a_continuous_job(r) -> None:  # type: ignore[no-untyped-def]
    jobs = JobStore(r)
    rec = ContinuousRecord(jobs, "c2")
    rec.open("p", {"name": "p"}, detached=True)
    rec.report(LoopStats("watching", 2, 0.0, batches=5), 4.0, {"sent": 9, "deleted": 2, "moved": 1})
    r.hset(key("job", "c2", "workers"), "w1", 4096)
    now = time.time()
    p = job_progress(jobs, "c2", now + 3)
    assert (p["continuous"], p["activity"], p["changes_pending"], p["batches"]) == (
        True,
        "watching",
        2,
        5,
    )
    assert 6 < p["lag_seconds"] < 9 and p["eta_seconds"] is None and p["workers"] == {"w1": 4096}
    text = render("p", [p])
    assert (
        f"running, continuous, watching: 2 change(s) pending, lag {p['lag_seconds']:.1f} s;" in text
        and "worker w1: 4.00 KiB" in text
    )
    assert "last heard" not in text
    stale = job_progress(jobs, "c2", now + 60)
    assert 59 <= stale["coordinator_seen_seconds_ago"] <= 62  # the heartbeat is in whole seconds
    assert f"coordinator last heard from {stale['coordinator_seen_seconds_ago']:.0f} s ago" in render("p", [stale])
    rec.close("stopped")
    stopped = job_progress(jobs, "c2")
    assert stopped["changes_pending"] == 0 and "(resumes when a coordinator starts)" in render(
        "p", [stopped]
    )


def test_adopting_left_over_jobs_closes_what_no_one_resumes(r) -> None:  # type: ignore[no-untyped-def]
    """A one-time run of a pair adopts the pair's unfinished jobs: a one-time job and a
    continuous job whose foreground run died are closed; a continuous job `surge coordinator`
    will resume is left open (only its adopted tasks are forgotten)."""
    jobs = JobStore(r)
    jobs.create_job("p", {"name": "p"}, [], job_id="0ld0ne")
    for job_id, detached in (("f0re", False), ("de7a", True)):
        rec = ContinuousRecord(jobs, job_id)
        rec.open("p", {"name": "p"}, detached=detached)
        rec.close("stopped")
    jobs.add_tasks("de7a", [batch("3.0", 10)])  # a batch a halted coordinator left to a worker
    jobs.start_task("de7a", "3.0", "w1")
    jobs.finish_task(
        "de7a", "3.0", True, events=[{"task": "3.0", "path": "3.0/f0", "status": "done"}]
    )
    sent: list[TaskSpec] = []
    dispatcher = CeleryDispatcher(jobs, sent.append, job_id="n3w")
    request = TransferRequest(SimpleNamespace(name="p", checksum="none"), None, [], True,
                              SimpleNamespace(stat=lambda path: None))  # fmt: skip
    dispatcher.transfer(request, lambda path, event: None, None)
    states = {j: jobs.job(j)["state"] for j in ("0ld0ne", "f0re", "de7a")}
    assert states == {"0ld0ne": "done", "f0re": "done", "de7a": "stopped"} and not sent
    assert not r.hlen(key("job", "de7a", "tasks")) and jobs.worker_bytes("de7a") == {"w1": 10}
    assert not r.llen(key("job", "de7a", "events"))


def test_cancel_takes_back_a_queued_request_and_closes_a_job_no_one_runs(r) -> None:  # type: ignore[no-untyped-def]
    import json

    from coordinator.cluster.cancel import CancelError, cancel_job
    from coordinator.cluster.syncrun import SUBMITTED

    jobs = JobStore(r)
    queued = {"v": 1, "id": "9ueued", "pair": "q", "argv": [], "cwd": "/", "submitted": 0, "continuous": True}
    r.lpush(SUBMITTED, json.dumps({**queued, "id": "0ther", "pair": "other"}), json.dumps(queued))
    assert cancel_job(r, "q", None, 5) == "job 9ueued: cancelled before it started"
    assert [json.loads(x)["id"] for x in r.lrange(SUBMITTED, 0, -1)] == ["0ther"]
    assert jobs.job("9ueued")["state"] == "cancelled"
    rec = ContinuousRecord(jobs, "s1lent")
    rec.open("q", {"name": "q"}, detached=True)
    r.hset(key("job", "s1lent"), "heartbeat", int(time.time()) - 60)  # its coordinator was killed
    assert cancel_job(r, "q", None, 5) == "job s1lent: cancelled"
    assert jobs.job("s1lent")["state"] == "cancelled" and jobs.job("s1lent")["cancel"] == 1
    with pytest.raises(CancelError, match="pair 'q' has no continuous job to cancel"):
        cancel_job(r, "q", None, 5)
    live = ContinuousRecord(jobs, "l1ve")
    live.open("q", {"name": "q"}, detached=True)  # heartbeat now, and no one to honour the flag
    with pytest.raises(CancelError, match=r"still finishing its batch in flight after --wait 0\.3 s"):
        cancel_job(r, "q", None, 0.3)
    assert r.hget(key("job", "l1ve"), "cancel") == b"1"

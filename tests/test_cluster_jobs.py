"""JobStore against a real redis-server: jobs, task records, leases, counters, events."""

from __future__ import annotations

import json
import time

import pytest
import redis

from common.cluster.jobs import JobNotFound, JobStore
from common.cluster.schema import (
    QUEUE_LARGE,
    QUEUE_SMALL,
    SCHEMA_VERSION,
    FileRef,
    RangeRef,
    SchemaError,
    TaskSpec,
    key,
)
from tests.redis_server import redis_server


@pytest.fixture(scope="module")
def server():
    with redis_server() as srv:
        yield srv


@pytest.fixture
def r(server):
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def store(r):
    return JobStore(r, lease_ms=500)


def batch(task: str, *sizes: int) -> TaskSpec:
    files = tuple(FileRef(f"{task}/f{i}", s, 1_000 + i) for i, s in enumerate(sizes))
    return TaskSpec(job="", task=task, kind="batch", queue=QUEUE_SMALL, files=files)


def rng(task: str, index: int, count: int, start: int, length: int, size: int) -> TaskSpec:
    ref = RangeRef("big.bin", size, 7, index, count, start, length)
    return TaskSpec(job="", task=task, kind="range", queue=QUEUE_LARGE, range=ref)


def test_create_job_writes_totals_specs_and_pending_records(store):
    tasks = [
        batch("b1", 10, 20),
        batch("b2", 5),
        rng("r0", 0, 2, 0, 60, 100),
        rng("r1", 1, 2, 60, 40, 100),
    ]
    job = store.create_job("demo", {"local_dir": "/data"}, tasks)
    j = store.job(job)
    assert (j["pair"], j["state"], j["v"]) == ("demo", "running", SCHEMA_VERSION)
    assert j["options"] == {"local_dir": "/data"}
    assert (j["tasks_total"], j["files_total"], j["bytes_total"]) == (4, 4, 135)
    assert (j["tasks_done"], j["files_done"], j["bytes_done"]) == (0, 0, 0)
    assert store.jobs_of_pair("demo") == [job]
    assert store.active_jobs() == [job]
    spec = store.task(job, "r1")
    assert spec.job == job and spec.range == tasks[3].range
    assert {t: s["state"] for t, s in store.task_states(job).items()} == dict.fromkeys(
        ["b1", "b2", "r0", "r1"], "pending"
    )


def test_jobs_of_pair_newest_first_and_add_tasks_raises_totals(store):
    first = store.create_job("p", {}, [])
    second = store.create_job("p", {}, [batch("a", 3)])
    assert store.jobs_of_pair("p") == [second, first]
    store.add_tasks(second, [batch("b", 4, 4)])
    j = store.job(second)
    assert (j["tasks_total"], j["files_total"], j["bytes_total"]) == (2, 3, 11)


def test_ten_thousand_tasks_in_few_round_trips(store, r):
    tasks = [batch(f"t{i:05d}", 1) for i in range(10_000)]
    before = r.info("stats")["total_commands_processed"]
    t0 = time.monotonic()
    job = store.create_job("big", {}, tasks)
    elapsed = time.monotonic() - t0
    j = store.job(job)
    assert j["tasks_total"] == 10_000 and j["files_total"] == 10_000
    assert len(store.task_states(job)) == 10_000
    after = r.info("stats")["total_commands_processed"]
    assert after - before < 2 * 10_000 + 100  # about 2 commands per task
    # ... pipelined: one round trip each would take ~9 s here (~2.3k round trips/s from Python)
    assert elapsed < 4


def test_other_schema_version_is_a_schema_error(store, r):
    job = store.create_job("p", {}, [batch("a", 1)])
    r.hset(key("job", job, "tasks"), "old", json.dumps({"v": 99, "job": job, "task": "old"}))
    with pytest.raises(SchemaError, match="schema version 99"):
        store.task(job, "old")
    r.hset(key("job", job), "v", 0)
    with pytest.raises(SchemaError, match="version 0"):
        store.job(job)


def test_missing_job_or_task_is_job_not_found(store):
    with pytest.raises(JobNotFound):
        store.job("nope")
    job = store.create_job("p", {}, [])
    with pytest.raises(JobNotFound, match="task 'x'"):
        store.task(job, "x")


def test_lease_is_exclusive_renewable_and_expires(store):
    job = store.create_job("p", {}, [batch("a", 1)])
    assert store.acquire_lease(job, "a", "w1")
    assert not store.acquire_lease(job, "a", "w2")
    assert store.acquire_lease(job, "a", "w1")  # the holder again: refreshed
    assert store.renew_lease(job, "a", "w1") and not store.renew_lease(job, "a", "w2")
    store.release_lease(job, "a", "w2")  # not the holder: no effect
    assert store.lease_holder(job, "a") == "w1"
    store.release_lease(job, "a", "w1")
    assert store.lease_holder(job, "a") is None
    assert store.acquire_lease(job, "a", "w2")
    time.sleep(0.7)  # lease_ms=500: the holder died
    assert not store.renew_lease(job, "a", "w2")
    assert store.acquire_lease(job, "a", "w3")


def test_start_progress_and_finish_count_once(store):
    job = store.create_job("p", {}, [batch("a", 10, 20), rng("r", 0, 1, 0, 100, 100)])
    assert store.start_task(job, "r", "w1").get("acked") is None
    store.progress(job, "r", 40, acked=30)
    before = store.start_task(job, "r", "w2")  # redelivered: resumes from the recorded prefix
    assert before["acked"] == 30 and before["worker"] == "w1"
    s = store.task_state(job, "r")
    assert (s["state"], s["worker"], s["attempts"], s["bytes_done"]) == ("running", "w2", 2, 40)
    assert store.finish_task(job, "r", True, files_done=1, files_failed=0, bytes_done=100)
    assert not store.finish_task(job, "r", True)  # a second finish counts nothing
    assert store.finish_task(job, "a", False, "far end refused")
    j = store.job(job)
    assert (j["tasks_done"], j["tasks_failed"]) == (1, 1)
    assert (j["files_done"], j["files_failed"], j["bytes_done"]) == (1, 2, 100)
    assert store.task_state(job, "a")["error"] == "far end refused"


def test_finish_defaults_to_the_whole_task(store):
    job = store.create_job("p", {}, [batch("a", 10, 20)])
    store.finish_task(job, "a", True)
    j = store.job(job)
    assert (j["files_done"], j["bytes_done"], j["tasks_done"]) == (2, 30, 1)
    assert store.finish_job(job) == "done"
    assert store.active_jobs() == []
    assert store.job(job)["state"] == "done"


def test_finish_job_failed_when_a_task_failed(store):
    job = store.create_job("p", {}, [batch("a", 1)])
    store.finish_task(job, "a", False, "boom")
    assert store.finish_job(job) == "failed"
    assert store.job(job)["error"] == "1 task(s) failed"
    store.set_job_state(job, "cancelled", "by operator")
    assert (store.job(job)["state"], store.job(job)["error"]) == ("cancelled", "by operator")


def test_events_pop_in_order_and_only_once(store):
    job = store.create_job("p", {}, [])
    for i in range(5):
        store.push_event(
            job, {"task": "a", "path": f"f{i}", "status": "done", "attrs": {}, "bytes": i}
        )
    first = store.pop_events(job, max_n=3)
    assert [e["path"] for e in first] == ["f0", "f1", "f2"]
    assert [e["path"] for e in store.pop_events(job)] == ["f3", "f4"]
    assert store.pop_events(job) == []


def test_str_replies_work_too(server):
    client = redis.Redis.from_url(server.url, decode_responses=True)
    s = JobStore(client)
    job = s.create_job("p", {"x": 1}, [batch("a", 3)])
    assert s.job(job)["bytes_total"] == 3 and s.task(job, "a").files[0].size == 3
    client.close()


def test_a_finishing_task_wakes_a_waiting_follower_at_once(store):
    job = store.create_job("p", {}, [batch("a", 1), batch("b", 1)])
    t0 = time.monotonic()
    store.wait_events(job, 0.3)  # nothing finished: the whole timeout
    assert time.monotonic() - t0 >= 0.25
    import threading

    timer = threading.Timer(0.1, lambda: store.finish_task(job, "a", True))
    timer.start()
    t0 = time.monotonic()
    store.wait_events(job, 5.0)
    waited = time.monotonic() - t0
    timer.join()
    assert 0.05 < waited < 1.0  # woken by the finish, not by the timeout
    assert not store.r.exists(f"surge:job:{job}:wake")  # the token was taken: nothing lingers
    store.finish_task(job, "a", True)  # a repeated finish changes nothing and wakes nobody
    t0 = time.monotonic()
    store.wait_events(job, 0.2)
    assert time.monotonic() - t0 >= 0.15

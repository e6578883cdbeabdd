"""Cluster benchmark (issue 5): planning rate, scaling with workers, small files through Celery.

1. Planning (pure, no Redis): 100,000 files -> tasks with coordinator/cluster/plan.py; then the
   same tasks written to a private redis-server as one job (JobStore.create_job, pipelined).
   Prints files/s and tasks/s of each.
2. Scaling: the same data (large files split into byte ranges) sent by `surge sync --cluster`
   with 1, 2 and 4 real `surge worker` processes, each session capped at ``-l`` RATE, to a
   `surge server` far end on 127.0.0.1; aggregate throughput = bytes / wall time of the sync,
   and the ratio to N x the one-worker figure (the issue's target: >= 0.9).
3. Small files: FILES files of 1-4 KiB through Celery with 2 workers, files/s end to end.

Every destination is compared with its source byte for byte; a difference fails the run. The
machine's core count bounds the scaling (each worker runs its own UDP session and cipher in
Python): the report says how many cores there were.

Usage: ``python -m bench.cluster_bench [--plan-files 100000] [--rate 200m] [--range-mib 16]
[--ranges 16] [--small-files 5000] [--workers 1,2,4] [--out docs/BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from coordinator.cluster.plan import PlanLimits, plan_tasks  # noqa: E402

__all__ = ["SECTION", "ClusterBenchConfig", "main", "plan_rate", "render", "run_bench"]

SECTION = "## Cluster (#5)"
SURGE = [sys.executable, "-m", "coordinator.cli"]
MiB = 1 << 20


@dataclass(frozen=True)
class ClusterBenchConfig:
    plan_files: int = 100_000
    rate: str = "200m"  # -l of each session
    range_mib: int = 16  # range size (--multi-session-threshold) of the scaling data
    ranges: int = 16  # ranges in the scaling data (files of 4 ranges each)
    small_files: int = 5000
    workers: tuple[int, ...] = (1, 2, 4)
    workdir: str = field(default_factory=tempfile.gettempdir)
    warmup_s: float = 2.0  # workers connect before the clock starts


@dataclass
class Results:
    plan: dict[str, float] = field(default_factory=dict)
    scaling: dict[int, float] = field(default_factory=dict)  # workers -> bytes/s
    small: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def plan_rate(files: int, redis_url: str | None = None) -> dict[str, float]:
    """Seconds and rates of planning `files` small files (and writing the job to Redis)."""
    entries = [
        (f"d{i // 1000:03d}/f{i:06d}.bin", 4096, 1_700_000_000_000_000_000 + i)
        for i in range(files)
    ]
    t0 = time.perf_counter()
    tasks = plan_tasks("bench", entries, PlanLimits())
    plan_s = time.perf_counter() - t0
    out = {"files": files, "tasks": len(tasks), "plan_s": plan_s, "plan_files_per_s": files / plan_s,
           "plan_tasks_per_s": len(tasks) / plan_s}  # fmt: skip
    if redis_url is not None:
        import redis

        from common.cluster.jobs import JobStore

        r = redis.Redis.from_url(redis_url)
        t0 = time.perf_counter()
        JobStore(r).create_job("bench", {"name": "bench"}, tasks)
        write_s = time.perf_counter() - t0
        out |= {"write_s": write_s, "write_files_per_s": files / write_s, "write_tasks_per_s": len(tasks) / write_s,
                "redis_used_bytes": float(r.info("memory")["used_memory"])}  # fmt: skip
        r.flushall()
    return out


def _tree(root: Path, small: int, large: list[int], seed: int) -> int:
    rnd = random.Random(seed)
    total = 0
    for i in range(small):
        p = root / f"d{i % 50:02d}" / f"s{i:06d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rnd.randbytes(rnd.randint(1024, 4096))
        p.write_bytes(data)
        total += len(data)
    for i, size in enumerate(large):
        p = root / "big" / f"l{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as fh:
            for _ in range(size // MiB):
                fh.write(os.urandom(MiB))
        total += size
    return total


def _same(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=[".surge"])
    stack = [cmp]
    while stack:
        c = stack.pop()
        if c.left_only or c.right_only or c.diff_files or c.funny_files:
            return False
        _match, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        if mismatch or errors:
            return False
        stack.extend(c.subdirs.values())
    return True


@contextmanager
def _workers(url: str, n: int, logs: Path, warmup_s: float) -> Iterator[None]:
    procs = []
    for i in range(n):
        with open(logs / f"w{n}-{i}.log", "wb") as fh:
            procs.append(subprocess.Popen([*SURGE, "worker", "--cluster", url, "--hostname", f"w{i}"],
                                          stdout=fh, stderr=fh))  # fmt: skip
    try:
        time.sleep(warmup_s)  # Celery workers connect and start consuming
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _sync(far: object, name: str, src: Path, dst: str, url: str, *extra: str) -> float:
    argv = [*SURGE, "sync", "-q", "-N", name, "-d", str(src), "-r", far.remote(dst), *far.auth(),  # type: ignore[attr-defined]
            "--create-dir", "--cluster", url, *extra]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"surge sync --cluster failed ({done.returncode}): {done.stderr[-500:]}")
    return seconds


def run_bench(cfg: ClusterBenchConfig, log: Callable[[str], object] = print) -> Results:
    from redis_server import redis_server
    from sshd import surge_server

    res = Results()
    res.notes.append(f"{os.cpu_count()} CPU cores, shared with other work during the run")
    base = Path(tempfile.mkdtemp(prefix="surge-cluster-bench-", dir=cfg.workdir))
    try:
        with ExitStack() as stack:
            srv = stack.enter_context(redis_server())
            res.plan = plan_rate(cfg.plan_files, srv.url)
            log(f"planning: {res.plan}")
            (base / "docroot").mkdir()
            far = stack.enter_context(
                surge_server(base / "server", docroot=base / "docroot", udp_ports=64)
            )
            src = base / "big-src"
            nbytes = _tree(src, 0, [4 * cfg.range_mib * MiB] * max(1, cfg.ranges // 4), seed=5)
            for n in cfg.workers:
                with _workers(srv.url, n, base, cfg.warmup_s):
                    secs = _sync(far, f"scale{n}", src, f"/scale{n}", srv.url, "-l", cfg.rate,
                                 "--multi-session-threshold", f"{cfg.range_mib}m")  # fmt: skip
                if not _same(src, base / "docroot" / f"scale{n}"):
                    raise RuntimeError(f"{n} worker(s): the destination differs from the source")
                res.scaling[n] = nbytes / secs
                log(f"{n} worker(s): {nbytes / secs / 1e6:.1f} MB/s ({secs:.2f} s)")
                shutil.rmtree(base / "docroot" / f"scale{n}")
            small = base / "small-src"
            _tree(small, cfg.small_files, [], seed=6)
            with _workers(srv.url, 2, base, cfg.warmup_s):
                secs = _sync(far, "small", small, "/small", srv.url, "-l", "1g")
            if not _same(small, base / "docroot" / "small"):
                raise RuntimeError("small files: the destination differs from the source")
            res.small = {
                "files": cfg.small_files,
                "seconds": secs,
                "files_per_s": cfg.small_files / secs,
            }
            log(f"small files: {res.small}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return res


def render(cfg: ClusterBenchConfig, res: Results, command: str) -> str:
    p = res.plan
    lines = [f"Command: `{command}`", "", f"Machine: {'; '.join(res.notes)}. Numbers are from one run; compare "
             "within it.", "", "| step | result | target |", "| --- | --- | --- |",
             f"| plan {p['files']:,.0f} files -> {p['tasks']:,.0f} tasks (pure) | {p['plan_s']:.3f} s: "
             f"{p['plan_files_per_s']:,.0f} files/s, {p['plan_tasks_per_s']:,.0f} tasks/s | >= 20,000 files/s |"]  # fmt: skip
    if "write_s" in p:
        lines.append(f"| write the job to Redis (pipelined) | {p['write_s']:.3f} s: {p['write_files_per_s']:,.0f} "
                     f"files/s, {p['write_tasks_per_s']:,.0f} tasks/s | - |")  # fmt: skip
    one = res.scaling.get(1)
    for n, rate in sorted(res.scaling.items()):
        ratio = f"{rate / (n * one):.2f} x N" if one else "-"
        lines.append(f"| {n} worker(s), each `-l {cfg.rate}` | {rate * 8 / 1e6:.0f} Mbit/s aggregate "
                     f"({ratio} of one worker) | >= 0.9 x N |")  # fmt: skip
    if res.small:
        s = res.small
        lines.append(f"| {s['files']:,.0f} small files, 2 workers | {s['seconds']:.2f} s: {s['files_per_s']:,.0f} "
                     "files/s end to end | >= 2,000 files/s |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.cluster_bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--plan-files", type=int, default=100_000)
    p.add_argument("--rate", default="200m")
    p.add_argument("--range-mib", type=int, default=16)
    p.add_argument("--ranges", type=int, default=16)
    p.add_argument("--small-files", type=int, default=5000)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--plan-only", action="store_true", help="only step 1 (pure, no processes)")
    p.add_argument(
        "--out", help="write the table as the 'Cluster (#5)' section of this Markdown file"
    )
    a = p.parse_args(argv)
    if a.plan_only:
        print(plan_rate(a.plan_files))
        return 0
    cfg = ClusterBenchConfig(plan_files=a.plan_files, rate=a.rate, range_mib=a.range_mib, ranges=a.ranges,
                             small_files=a.small_files, workers=tuple(int(x) for x in a.workers.split(",")))  # fmt: skip
    res = run_bench(cfg)
    table = render(
        cfg,
        res,
        "python -m bench.cluster_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    print(table)
    if a.out:
        from bench.loopback import write_section

        write_section(a.out, table, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
Python), so steps 2 and 3 also report CPU seconds from /proc (bench/cpu.py): of the
coordinator, the workers, the far end (`surge server` and its agents) and Redis, and of the
whole machine (every process, other people's work included) against what it had (cores x
wall). A run whose machine total is near its capacity was limited by the machine.

Usage: ``python -m bench.cluster_bench [--plan-files 100000] [--rate 200m] [--range-mib 16]
[--ranges 16] [--small-files 5000] [--workers 1,2,4] [--steps plan,scaling,small]
[--workdir DIR] [--out docs/BENCHMARKS.md]``.
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

from bench.cpu import CpuMeter, CpuUse  # noqa: E402
from coordinator.cluster.plan import PlanLimits, plan_tasks  # noqa: E402

__all__ = ["SECTION", "ClusterBenchConfig", "main", "plan_rate", "render", "run_bench"]

SECTION = "## Cluster (#5)"
SURGE = [sys.executable, "-m", "coordinator.cli"]
MiB = 1 << 20
STEPS = ("plan", "scaling", "small")


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
    steps: tuple[str, ...] = STEPS


@dataclass
class Results:
    plan: dict[str, float] = field(default_factory=dict)
    scaling: dict[int, float] = field(default_factory=dict)  # workers -> bytes/s
    small: dict[str, float] = field(default_factory=dict)  # the workers' first sync
    small_again: dict[str, float] = field(default_factory=dict)  # the next: connections kept
    cpu: dict[str, CpuUse] = field(default_factory=dict)  # step label -> CPU use
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
def _workers(
    url: str, n: int, logs: Path, warmup_s: float
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    for i in range(n):
        with open(logs / f"w{n}-{i}.log", "wb") as fh:
            procs.append(subprocess.Popen([*SURGE, "worker", "--cluster", url, "--hostname", f"w{i}"],
                                          stdout=fh, stderr=fh))  # fmt: skip
    try:
        time.sleep(warmup_s)  # Celery workers connect and start consuming
        yield procs
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _sync(far: object, name: str, src: Path, dst: str, url: str, *extra: str,
          meter: CpuMeter | None = None) -> float:  # fmt: skip
    """Seconds of one `surge sync --cluster` (its CPU use in `meter` when given)."""
    argv = [*SURGE, "sync", "-q", "-N", name, "-d", str(src), "-r", far.remote(dst), *far.auth(),  # type: ignore[attr-defined]
            "--create-dir", "--cluster", url, *extra]  # fmt: skip
    with meter if meter is not None else ExitStack():
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"surge sync --cluster failed ({done.returncode}): {done.stderr[-500:]}")
    return seconds


def _meter(workers: list[subprocess.Popen[bytes]], far: object, redis_proc: object) -> CpuMeter:
    """CPU of the run's parts: the coordinator (the `surge sync` this process waits for), the
    workers, the far end (`surge server` and its agents) and Redis."""
    return CpuMeter({"workers": lambda: [p.pid for p in workers],
                     "far end": lambda: [far.proc.pid],  # type: ignore[attr-defined]
                     "redis": lambda: [redis_proc.pid]},  # type: ignore[attr-defined]
                    reaped="coordinator")  # fmt: skip


def run_bench(cfg: ClusterBenchConfig, log: Callable[[str], object] = print) -> Results:
    from redis_server import redis_server
    from sshd import surge_server

    res = Results()
    res.notes.append(f"{os.cpu_count()} CPU cores, shared with other work during the run")
    base = Path(tempfile.mkdtemp(prefix="surge-cluster-bench-", dir=cfg.workdir))
    try:
        with ExitStack() as stack:
            srv = stack.enter_context(redis_server())
            if "plan" in cfg.steps:
                res.plan = plan_rate(cfg.plan_files, srv.url)
                log(f"planning: {res.plan}")
            (base / "docroot").mkdir()
            far = stack.enter_context(
                surge_server(base / "server", docroot=base / "docroot", udp_ports=64)
            )
            if "scaling" in cfg.steps:
                _scaling(cfg, res, base, srv, far, log)
            if "small" in cfg.steps:
                _small(cfg, res, base, srv, far, log)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return res


def _scaling(cfg: ClusterBenchConfig, res: Results, base: Path, srv: object, far: object,
             log: Callable[[str], object]) -> None:  # fmt: skip
    src = base / "big-src"
    nbytes = _tree(src, 0, [4 * cfg.range_mib * MiB] * max(1, cfg.ranges // 4), seed=5)
    url = srv.url  # type: ignore[attr-defined]
    for n in cfg.workers:
        with _workers(url, n, base, cfg.warmup_s) as procs:
            meter = _meter(procs, far, srv.proc)  # type: ignore[attr-defined]
            secs = _sync(far, f"scale{n}", src, f"/scale{n}", url, "-l", cfg.rate,
                         "--multi-session-threshold", f"{cfg.range_mib}m", meter=meter)  # fmt: skip
        if not _same(src, base / "docroot" / f"scale{n}"):
            raise RuntimeError(f"{n} worker(s): the destination differs from the source")
        res.scaling[n] = nbytes / secs
        res.cpu[f"{n} worker(s), ranges"] = meter.result
        log(
            f"{n} worker(s): {nbytes / secs / 1e6:.1f} MB/s ({secs:.2f} s); CPU {meter.result.as_dict()}"
        )
        shutil.rmtree(base / "docroot" / f"scale{n}")


def _small(cfg: ClusterBenchConfig, res: Results, base: Path, srv: object, far: object,
           log: Callable[[str], object]) -> None:  # fmt: skip
    small = base / "small-src"
    _tree(small, cfg.small_files, [], seed=6)
    url = srv.url  # type: ignore[attr-defined]
    # Twice, to two destinations: the workers' first sync opens their far ends, the next one
    # finds them kept (workers/cluster/farends.py), as a worker that serves many jobs does.
    with _workers(url, 2, base, cfg.warmup_s) as procs:
        for label, name in (("first sync", "small"), ("next sync", "small2")):
            meter = _meter(procs, far, srv.proc)  # type: ignore[attr-defined]
            secs = _sync(far, name, small, f"/{name}", url, "-l", "1g", meter=meter)
            if not _same(small, base / "docroot" / name):
                raise RuntimeError("small files: the destination differs from the source")
            out = {"files": cfg.small_files, "seconds": secs, "files_per_s": cfg.small_files / secs}
            if name == "small":
                res.small = out
            else:
                res.small_again = out
            res.cpu[f"2 workers, small files, {label}"] = meter.result
            log(f"small files, {label}: {out}; CPU {meter.result.as_dict()}")


CPU_GROUPS = ("coordinator", "workers", "far end", "redis")


def render_cpu(res: Results) -> list[str]:
    """The CPU table: seconds per part, Surge's total, the whole machine's, and its capacity."""
    if not res.cpu:
        return []
    lines = ["", "CPU seconds (user + system, from /proc) during each sync:", "",
             "| step | wall s | coordinator | workers | far end | Redis | Surge total | whole machine | "
             "capacity (cores x wall) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label, u in res.cpu.items():
        parts = [u.groups.get(g, 0.0) for g in CPU_GROUPS]
        share = f" ({u.machine / u.capacity:.0%})" if u.capacity else ""
        lines.append(f"| {label} | {u.wall:.2f} | " + " | ".join(f"{x:.2f}" for x in parts)
                     + f" | {sum(parts):.2f} | {u.machine:.2f}{share} | {u.capacity:.2f} |")  # fmt: skip
    return lines


def render(cfg: ClusterBenchConfig, res: Results, command: str) -> str:
    p = res.plan
    lines = [f"Command: `{command}`", "", f"Machine: {'; '.join(res.notes)}. Numbers are from one run; compare "
             "within it.", "", "| step | result | target |", "| --- | --- | --- |"]  # fmt: skip
    if p:
        lines.append(f"| plan {p['files']:,.0f} files -> {p['tasks']:,.0f} tasks (pure) | {p['plan_s']:.3f} s: "
                     f"{p['plan_files_per_s']:,.0f} files/s, {p['plan_tasks_per_s']:,.0f} tasks/s | >= 20,000 files/s |")  # fmt: skip
    if "write_s" in p:
        lines.append(f"| write the job to Redis (pipelined) | {p['write_s']:.3f} s: {p['write_files_per_s']:,.0f} "
                     f"files/s, {p['write_tasks_per_s']:,.0f} tasks/s | - |")  # fmt: skip
    one = res.scaling.get(1)
    for n, rate in sorted(res.scaling.items()):
        ratio = f"{rate / (n * one):.2f} x N" if one else "-"
        lines.append(f"| {n} worker(s), each `-l {cfg.rate}` | {rate * 8 / 1e6:.0f} Mbit/s aggregate "
                     f"({ratio} of one worker) | >= 0.9 x N |")  # fmt: skip
    for s, label in (
        (res.small, "first sync: workers connect"),
        (res.small_again, "next sync: connections kept"),
    ):
        if s:
            lines.append(f"| {s['files']:,.0f} small files, 2 workers ({label}) | {s['seconds']:.2f} s: "
                         f"{s['files_per_s']:,.0f} files/s end to end | >= 2,000 files/s |")  # fmt: skip
    lines += render_cpu(res)
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
    p.add_argument("--steps", default=",".join(STEPS), help="steps to run: plan, scaling, small")
    p.add_argument("--workdir", default=tempfile.gettempdir(),
                   help="where the trees and the far end's docroot go (default: the temp directory)")  # fmt: skip
    p.add_argument("--plan-only", action="store_true", help="only step 1 (pure, no processes)")
    p.add_argument(
        "--out", help="write the table as the 'Cluster (#5)' section of this Markdown file"
    )
    a = p.parse_args(argv)
    if a.plan_only:
        print(plan_rate(a.plan_files))
        return 0
    steps = tuple(x.strip() for x in a.steps.split(",") if x.strip())
    if not steps or set(steps) - set(STEPS):
        p.error(f"--steps: expected some of {', '.join(STEPS)}, got {a.steps!r}")
    cfg = ClusterBenchConfig(plan_files=a.plan_files, rate=a.rate, range_mib=a.range_mib, ranges=a.ranges,
                             small_files=a.small_files, workers=tuple(int(x) for x in a.workers.split(",")),
                             steps=steps, workdir=a.workdir)  # fmt: skip
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

"""Continuous sync on a cluster (issue 8, cluster part): `surge sync -C --cluster` with real
`surge worker` processes and a private redis-server, local to local (the workers start the far
end's agent themselves).

1. Latency: a stream of small files written at a steady rate into the watched tree; for each,
   the time from its close to its arrival at the destination (bench/continuous_bench.py's
   poller). Every batch costs a Celery round trip, a control session and a UDP session on a
   worker: the price of the cluster over the embedded `-C`.
2. Idle: CPU seconds of the coordinator process (and its children) over an idle period after
   the stream, and its resident memory: the reporter writes the job's record every second.

Usage: ``python -m bench.cluster_continuous_bench [--stream 200] [--rate 20] [--cooloff 1]
[--workers 2] [--idle-seconds 30] [--out docs/BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench.cluster_bench import _workers  # noqa: E402
from bench.continuous_bench import Surge, _pct, cpu_seconds, rss_mib, stream_latency  # noqa: E402

__all__ = ["SECTION", "Config", "main", "render", "run_bench"]

SECTION = "## Continuous sync on a cluster (#8)"


@dataclass(frozen=True)
class Config:
    stream: int = 200
    rate: float = 20.0
    cooloff: int = 1
    workers: int = 2
    idle_seconds: float = 30.0
    file_size: int = 4096


def run_bench(cfg: Config) -> dict[str, Any]:
    from redis_server import redis_server

    base = Path(tempfile.mkdtemp(prefix="surge-cc-bench-"))
    src, dst = base / "src", base / "dst"
    src.mkdir()
    dst.mkdir()
    try:
        with ExitStack() as stack:
            srv = stack.enter_context(redis_server())
            stack.enter_context(_workers(srv.url, cfg.workers, base, 2.0))
            surge = Surge(str(base), str(src), str(dst), "--cooloff", str(cfg.cooloff), "--pending-max", "10000",
                          "--cluster", srv.url)  # fmt: skip
            try:
                latency = stream_latency(str(src), str(dst), cfg.stream, cfg.rate, cfg.file_size)
                time.sleep(cfg.cooloff + 2)  # the last batch's acknowledgements
                before = cpu_seconds(surge.proc.pid)
                time.sleep(cfg.idle_seconds)
                idle_cpu = cpu_seconds(surge.proc.pid) - before
                rss = rss_mib(surge.proc.pid)
            finally:
                surge.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"latency": latency, "idle_cpu": idle_cpu, "rss_mib": rss}


def render(cfg: Config, res: dict[str, Any], command: str) -> str:
    lat = sorted(res["latency"])
    lost = sum(1 for x in lat if x == float("inf"))
    return "\n".join([
        f"`{command}` ({os.cpu_count()} CPU cores, shared with other work during the run)", "",
        "| measure | value |", "| --- | --- |",
        f"| close-to-arrival, {cfg.stream} files at {cfg.rate:g}/s, --cooloff {cfg.cooloff}, {cfg.workers} workers "
        f"| p50 {_pct(lat, 0.5):.2f} s, p99 {_pct(lat, 0.99):.2f} s, max {lat[-1]:.2f} s, {lost} never arrived |",
        f"| coordinator idle CPU over {cfg.idle_seconds:g} s | {res['idle_cpu']:.2f} s "
        f"({100 * res['idle_cpu'] / cfg.idle_seconds:.2f} % of a core) |",
        f"| coordinator resident memory | {res['rss_mib']:.0f} MiB |",
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_continuous_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--stream", type=int, default=200)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--cooloff", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--out", help="write the table as this section of the Markdown file")
    a = p.parse_args(argv)
    cfg = Config(stream=a.stream, rate=a.rate, cooloff=a.cooloff, workers=a.workers, idle_seconds=a.idle_seconds)
    table = render(cfg, run_bench(cfg), "python -m bench.cluster_continuous_bench " +
                   " ".join(argv if argv is not None else sys.argv[1:]))  # fmt: skip
    print(table)
    if a.out:
        from bench.shared import write_section

        write_section(a.out, table, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Redis snapshot memory (issue #5): Redis memory per tracked file, and the write, update and
full-load rates of the Redis snapshot store, next to the SQLite store on the same entries.

Each case starts a fresh private ``redis-server`` (127.0.0.1, free port, no persistence), opens a
RedisSnapshot and records N files in batches (as the coordinator does), then reports:

- bytes/file: ``INFO memory`` ``used_memory`` after the load minus before it, divided by N (the
  issue's target: <= 300), and the store's own ``size_bytes()`` (MEMORY USAGE of its keys) / N;
- write: files/s recording N new files in batches of ``--batch``;
- update: files/s re-recording a random tenth of them (new mtimes) in batches, in random order;
- load: files/s of ``load()`` (every entry of a side), and ``iter_side()`` in order;
- the same for SqliteSnapshot in a temporary directory: file bytes per entry and its rates.

Cases: 3-level paths like ``d012/d034/f00056.bin`` (100 files per leaf directory) without and
with SHA-1 checksums, and long paths (~100 bytes, past Redis's 64-byte listpack value limit) with
SHA-1 as the worst case. Entries carry realistic size/mtime/mode/inode/dev/uid/gid.

The machine is shared by several jobs: rates are noisy, compare within one run. Memory is not.

Usage: ``python -m bench.redis_memory [--files 100000] [--batch 10000] [--out docs/BENCHMARKS.md]``
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis

from bench.loopback import write_section
from common.snapshot import Entry, RedisSnapshot, SnapshotStore, SqliteSnapshot
from tests.redis_server import redis_server

__all__ = ["CASES", "SECTION", "Case", "Result", "main", "make_entries", "measure", "render"]

SECTION = "## Redis snapshot memory (#5)"
TARGET_BYTES_PER_FILE = 300
FILES_PER_DIR = 100


@dataclass(frozen=True)
class Case:
    name: str
    checksums: bool
    long_paths: bool


CASES = (
    Case("3-level paths, no checksum", False, False),
    Case("3-level paths, SHA-1", True, False),
    Case("~100-byte paths, SHA-1", True, True),
)


@dataclass(frozen=True)
class Result:
    case: Case
    files: int
    redis_bytes: float  # used_memory delta / files
    redis_store_bytes: float  # size_bytes() / files
    sqlite_bytes: float  # database file / files
    rates: dict[str, float]  # "<store> <step>" -> files/s


def path_of(n: int, long_paths: bool) -> str:
    leaf, f = divmod(n, FILES_PER_DIR)
    a, b = divmod(leaf, 100)
    if long_paths:
        return (f"projects/customer-{a:04d}-archive/renders/2024-final-delivery/shot-{b:04d}"
                f"/frame-{f:06d}-v003-linear-acescg.exr")  # fmt: skip
    return f"d{a:03d}/d{b:03d}/f{f:05d}.bin"


def make_entries(files: int, case: Case, seed: int = 1) -> list[Entry]:
    rng = random.Random(seed)
    base = 1_700_000_000_000_000_000
    return [
        Entry(path_of(n, case.long_paths), "file", rng.randrange(1, 1 << 24),
              base + rng.randrange(1 << 50), 0o644, 1_000_000 + n, 2049, 1,
              rng.randbytes(20).hex() if case.checksums else None, uid=1000, gid=1000)
        for n in range(files)
    ]  # fmt: skip


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _exercise(store: SnapshotStore, entries: list[Entry], batch: int, tag: str) -> dict[str, float]:
    """Write, update, load and iterate; files/s of each, keyed ``"<tag> <step>"``."""
    n = len(entries)
    write = sum(_timed(partial(store.apply, "local", entries[i : i + batch])) for i in range(0, n, batch))
    rng = random.Random(2)
    changed = [Entry(e.path, e.kind, e.size, e.mtime_ns + 1, e.mode, e.inode, e.dev,
                     checksum=e.checksum, uid=e.uid, gid=e.gid)
               for e in rng.sample(entries, max(1, n // 10))]  # fmt: skip
    update = sum(_timed(partial(store.apply, "local", changed[i : i + batch])) for i in range(0, len(changed), batch))
    loaded: dict[str, Entry] = {}
    load = _timed(lambda: loaded.update(store.load("local")))
    if len(loaded) != n:
        raise RuntimeError(f"{tag}: load() gave {len(loaded)} entries, expected {n}")
    walk = _timed(lambda: sum(1 for _ in store.iter_side("local")))
    return {f"{tag} write": n / write, f"{tag} update": len(changed) / update,
            f"{tag} load": n / load, f"{tag} iter": n / walk}  # fmt: skip


def measure(case: Case, files: int, batch: int) -> Result:
    entries = make_entries(files, case)
    with redis_server() as srv:
        raw = redis.Redis.from_url(srv.url)
        with RedisSnapshot(srv.url, "bench") as store:
            before = raw.info("memory")["used_memory"]
            rates = _exercise(store, entries, batch, "redis")
            after = raw.info("memory")["used_memory"]
            store_bytes = store.size_bytes()
        raw.close()
    with (
        tempfile.TemporaryDirectory(prefix="surge-snapbench-") as tmp,
        SqliteSnapshot(os.path.join(tmp, "bench.db"), "bench") as lite,
    ):
        rates.update(_exercise(lite, entries, batch, "sqlite"))
        sqlite_bytes = lite.size_bytes()
    return Result(case, files, (after - before) / files, store_bytes / files,
                  sqlite_bytes / files, rates)  # fmt: skip


def render(results: list[Result], command: str) -> str:
    lines = [
        f"Command: `{command}`. Redis {_redis_version()}, one fresh redis-server per case, "
        "no persistence; rates in files/s (the machine is shared: compare within the run).",
        "",
        "| case | Redis bytes/file (used_memory) | Redis MEMORY USAGE/file | SQLite file bytes/file"
        " | Redis write | SQLite write | Redis update | SQLite update | Redis load | SQLite load"
        " | Redis iter | SQLite iter |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rate = r.rates
        cells = [f"{r.case.name} (N={r.files:,})", f"{r.redis_bytes:.0f}",
                 f"{r.redis_store_bytes:.0f}", f"{r.sqlite_bytes:.0f}"]  # fmt: skip
        for step in ("write", "update", "load", "iter"):
            cells += [f"{rate[f'redis {step}']:,.0f}", f"{rate[f'sqlite {step}']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        ratio = {s: r.rates[f"redis {s}"] / r.rates[f"sqlite {s}"] for s in ("write", "load")}
        verdict = "meets" if r.redis_bytes <= TARGET_BYTES_PER_FILE else "MISSES"
        lines.append(
            f"- {r.case.name}: {r.redis_bytes:.0f} bytes/file {verdict} the"
            f" {TARGET_BYTES_PER_FILE}-byte target; Redis/SQLite: {r.redis_bytes / r.sqlite_bytes:.2f}x"
            f" the bytes, {ratio['write']:.2f}x the write rate, {ratio['load']:.2f}x the load rate."
        )
    return "\n".join(lines) + "\n"


def _redis_version() -> str:
    import subprocess

    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return next((w[2:] for w in out.split() if w.startswith("v=")), "unknown")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.redis_memory", description=__doc__)
    ap.add_argument("--files", type=int, default=100_000, help="tracked files per case")
    ap.add_argument("--batch", type=int, default=10_000, help="entries per apply()")
    ap.add_argument("--out", help="write the table as a section of this Markdown file")
    args = ap.parse_args(argv)
    if args.files < 1 or args.batch < 1:
        ap.error("--files and --batch must be positive")
    results = []
    for case in CASES:
        results.append(measure(case, args.files, args.batch))
        print(f"{case.name}: {results[-1].redis_bytes:.0f} bytes/file", file=sys.stderr)
    command = "python -m bench.redis_memory " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(results, command.strip())
    print(text)
    if args.out:
        write_section(args.out, text, SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

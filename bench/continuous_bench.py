"""Continuous sync benchmark (issue 8): `surge sync -C` against lsyncd (rsync on change, when it
is installed) and a loop of `rsync -a`, local to local, in one run.

1. Latency: a stream of small files written at a steady rate into a watched tree; for each file
   the time from its close to its arrival at the destination (a poller lists the destination
   every 5 ms; a file arrives under its final name only complete). p50 and p99 per tool.
2. Idle: a tree of N files (100 per directory) watched, nothing changing: CPU seconds over the
   idle period (utime + stime from /proc of the tool and its children, e.g. the local agent)
   and resident memory at the end. Surge runs with --no-scan here unless --idle-initial (the
   initial sync of a big tree is the sync benchmark's business); the rsync loop pays a full
   pass each interval, lsyncd sits on inotify like Surge.
3. Rename: a directory of M files renamed in the source: time until the destination has it,
   whether the files kept their inodes there (renamed, not resent), Surge's status lines, and
   the bytes `rsync -a --delete` sends for the same rename.

Usage: ``python -m bench.continuous_bench [--stream 1000] [--rate 100] [--cooloff 3]
[--idle-files 100000] [--idle-seconds 30] [--rename-files 10000] [--out docs/BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.shared import machine_info, write_section
from bench.sshtools import free_udp_port

__all__ = ["SECTION", "ContinuousBenchConfig", "Report", "main", "render", "run_bench"]

SECTION = "## Continuous sync (#8)"
READY_SECONDS = 600.0  # an initial sync of a big tree takes minutes on a loaded machine
ARRIVAL_SECONDS = 120.0
POLL = 0.005
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ContinuousBenchConfig:
    stream: int = 1000  # files in the latency stream
    rate: float = 100.0  # files per second
    file_size: int = 4096
    cooloff: int = 3  # surge --cooloff and lsyncd's delay
    idle_files: int = 100_000
    idle_seconds: float = 30.0
    idle_initial: bool = False  # surge: a real initial sync before the idle period
    rename_files: int = 10_000
    rsync_interval: float = 1.0  # seconds between the passes of the rsync loop
    settle: float = 2.0  # seconds after a tool is ready before the idle period starts
    workdir: str | None = None
    parts: tuple[str, ...] = ("latency", "idle", "rename")


@dataclass
class Report:
    config: ContinuousBenchConfig
    latency: dict[str, list[float]] = field(default_factory=dict)  # tool -> seconds per file
    idle: dict[str, tuple[float, float]] = field(default_factory=dict)  # tool -> (CPU s, RSS MiB)
    rename: dict[str, dict[str, object]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)
    command: str = ""


# -- processes ------------------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """CPU of `pid` and its living descendants, with the children each of them has reaped
    (utime + stime + cutime + cstime): the rsync passes of a shell loop count too."""
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def rss_mib(pid: int) -> float:
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


class Surge:
    """`surge sync -C` local to local; ready once it says it is watching."""

    def __init__(self, work: str, src: str, dst: str, *args: str) -> None:
        self.out, self.err = os.path.join(work, "surge.out"), os.path.join(work, "surge.err")
        argv = [sys.executable, "-m", "coordinator.cli", "sync", "-N", "bench", "-d", src, "-r", dst, "-C",
                "-O", str(free_udp_port()), "-l", "1g", *args]  # fmt: skip
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err)
        deadline = time.monotonic() + READY_SECONDS
        while "watching for changes" not in self.stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"surge sync -C did not start: {self.stderr()[-1000:]}")
            time.sleep(0.1)

    def stderr(self) -> str:
        with open(self.err) as fh:
            return fh.read()

    def lines(self) -> list[tuple[str, str]]:
        with open(self.out) as fh:
            return [(ln.split()[0].lstrip("/"), ln.split()[-1]) for ln in fh if ln.strip()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Lsyncd:
    """lsyncd (rsync on inotify events, `delay` seconds of batching); ready after its first
    full rsync."""

    def __init__(self, work: str, src: str, dst: str, delay: int) -> None:
        self.status = os.path.join(work, "lsyncd.status")
        conf, log = os.path.join(work, "lsyncd.conf.lua"), os.path.join(work, "lsyncd.log")
        for old in (self.status, log):  # a previous run's "finished" must not count
            if os.path.exists(old):
                os.unlink(old)
        with open(conf, "w") as fh:
            fh.write(f'settings {{ nodaemon = true, statusFile = "{self.status}", statusInterval = 1,'
                     f' logfile = "{log}", insist = true }}\n'
                     f'sync {{ default.rsync, source = "{src}", target = "{dst}", delay = {max(delay, 0)},'
                     f' rsync = {{ archive = true }} }}\n')  # fmt: skip
        self.proc = subprocess.Popen(
            ["lsyncd", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_SECONDS
        while True:  # "Startup of SRC -> DST finished." once its first full rsync is done
            if os.path.exists(log) and re.search(r"Startup of .* finished", Path(log).read_text()):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("lsyncd did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class RsyncLoop:
    """`rsync -a src/ dst/` again and again, `interval` seconds apart."""

    def __init__(self, src: str, dst: str, interval: float) -> None:
        script = f'while true; do rsync -a "$0/" "$1/"; sleep {interval}; done'
        subprocess.run(["rsync", "-a", src + "/", dst + "/"], check=True)
        self.proc = subprocess.Popen(["sh", "-c", script, src, dst], start_new_session=True,
                                     stderr=subprocess.DEVNULL)  # fmt: skip

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)  # the loop and the rsync it runs, if any
        self.proc.wait(30)


# -- the three measurements ------------------------------------------------------------------
def make_tree(root: str, files: int, per_dir: int = 100, size: int = 1024) -> None:
    data = os.urandom(size)
    for i in range(files):
        d = os.path.join(root, f"d{i // per_dir:05}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06}"), "wb") as fh:
            fh.write(data)


def stream_latency(src: str, dst: str, count: int, rate: float, size: int) -> list[float]:
    """Write `count` files into `src` at `rate` per second; seconds from each close to its
    arrival in `dst` (inf when it never came)."""
    closed: dict[str, float] = {}
    arrived: dict[str, float] = {}
    done = threading.Event()

    def poll() -> None:
        deadline = None
        while len(arrived) < count:
            now = time.monotonic()
            try:
                for name in os.listdir(dst):
                    if (
                        name.startswith("s")
                        and name not in arrived
                        and not name.endswith(".partial")
                    ):
                        arrived[name] = now
            except OSError:
                pass
            if done.is_set():
                deadline = deadline or now + ARRIVAL_SECONDS
                if now > deadline:
                    return
            time.sleep(POLL)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    data = os.urandom(size)
    start = time.monotonic()
    for i in range(count):
        name = f"s{i:06}"
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        with open(os.path.join(src, name), "wb") as fh:
            fh.write(data)
        closed[name] = time.monotonic()
    done.set()
    poller.join()
    return [arrived.get(n, float("inf")) - t for n, t in closed.items()]


@contextmanager
def _pair(work: str, name: str) -> Iterator[tuple[str, str]]:
    src, dst = os.path.join(work, name, "src"), os.path.join(work, name, "dst")
    os.makedirs(src)
    os.makedirs(dst)
    try:
        yield src, dst
    finally:
        shutil.rmtree(os.path.join(work, name), ignore_errors=True)


def bench_latency(cfg: ContinuousBenchConfig, work: str, report: Report) -> None:
    tools = ["surge", "rsync-loop"] + (["lsyncd"] if shutil.which("lsyncd") else [])
    for tool in tools:
        with _pair(work, f"lat-{tool}") as (src, dst):
            runner = _start(tool, cfg, work, src, dst)
            try:
                report.latency[tool] = stream_latency(src, dst, cfg.stream, cfg.rate, cfg.file_size)
            finally:
                runner.stop()


def _start(
    tool: str, cfg: ContinuousBenchConfig, work: str, src: str, dst: str, *extra: str
) -> Surge | Lsyncd | RsyncLoop:
    if tool == "surge":
        return Surge(
            work, src, dst, "--cooloff", str(cfg.cooloff), "--pending-max", "10000", *extra
        )
    if tool == "lsyncd":
        return Lsyncd(work, src, dst, cfg.cooloff)
    return RsyncLoop(src, dst, cfg.rsync_interval)


def bench_idle(cfg: ContinuousBenchConfig, work: str, report: Report) -> None:
    tools = ["surge", "rsync-loop"] + (["lsyncd"] if shutil.which("lsyncd") else [])
    with _pair(work, "idle") as (src, _):
        make_tree(src, cfg.idle_files)
        for tool in tools:
            dst = os.path.join(work, "idle", f"dst-{tool}")
            os.makedirs(dst)
            extra = () if cfg.idle_initial else ("--no-scan",)
            runner = _start(tool, cfg, work, src, dst, *extra)
            try:
                time.sleep(cfg.settle)  # the last acknowledgements, the agent's idle state
                pid = runner.proc.pid
                before = cpu_seconds(pid)
                time.sleep(cfg.idle_seconds)
                report.idle[tool] = (cpu_seconds(pid) - before, rss_mib(pid))
            finally:
                runner.stop()
                shutil.rmtree(dst, ignore_errors=True)


def bench_rename(cfg: ContinuousBenchConfig, work: str, report: Report) -> None:
    with _pair(work, "rename") as (src, dst):
        make_tree(os.path.join(src, "big"), cfg.rename_files, per_dir=cfg.rename_files)
        surge = Surge(work, src, dst, "--cooloff", str(cfg.cooloff))
        try:
            inner = os.path.join(dst, "big", "d00000")
            inodes = {n: os.stat(os.path.join(inner, n)).st_ino for n in os.listdir(inner)}
            started = time.monotonic()
            os.rename(os.path.join(src, "big"), os.path.join(src, "moved"))
            target = os.path.join(dst, "moved", "d00000")
            while not os.path.isdir(target) and time.monotonic() - started < ARRIVAL_SECONDS:
                time.sleep(POLL)
            elapsed = time.monotonic() - started
            time.sleep(cfg.cooloff + 1)  # anything sent after the rename would show by now
            kept = sum(
                1 for n, ino in inodes.items() if os.stat(os.path.join(target, n)).st_ino == ino
            )
            lines = [ln for ln in surge.lines() if ln[0] == "moved" or ln[0].startswith("moved/")]
            report.rename["surge"] = {"seconds": elapsed - cfg.cooloff, "kept_inodes": kept, "files": len(inodes),
                                      "lines": lines}  # fmt: skip
        finally:
            surge.stop()
        rsync_dst = os.path.join(work, "rename", "rsync-dst")
        os.rename(os.path.join(src, "moved"), os.path.join(src, "big"))
        subprocess.run(
            ["rsync", "-a", src + "/", rsync_dst + "/", "--exclude", ".surge"], check=True
        )
        os.rename(os.path.join(src, "big"), os.path.join(src, "moved"))
        started = time.monotonic()
        out = subprocess.run(["rsync", "-a", "--delete", "--stats", src + "/", rsync_dst + "/", "--exclude", ".surge"],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        sent = re.search(r"Total transferred file size: ([\d,]+)", out)
        report.rename["rsync"] = {"seconds": time.monotonic() - started,
                                  "bytes": int(sent.group(1).replace(",", "")) if sent else -1}  # fmt: skip


def run_bench(cfg: ContinuousBenchConfig) -> Report:
    report = Report(cfg)
    work = tempfile.mkdtemp(prefix="surge-cbench-", dir=cfg.workdir)
    report.machine = machine_info(work)
    if not shutil.which("lsyncd"):
        report.notes.append("lsyncd is not installed: compared with the rsync loop only")
    try:
        for part, bench in (
            ("latency", bench_latency),
            ("idle", bench_idle),
            ("rename", bench_rename),
        ):
            if part in cfg.parts:
                bench(cfg, work, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


# -- report -----------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def render(report: Report) -> str:
    c = report.config
    out = [f"Command: `{report.command}`", "",
           f"Machine: {report.machine.get('nproc')} CPUs ({report.machine.get('cpu')}), kernel "
           f"{report.machine.get('kernel')}, {report.machine.get('filesystem')}; shared with other jobs, so "
           "every number is noisy: compare the tools within this run.", "",
           f"### Latency: {c.stream} files of {c.file_size} B written at {c.rate:g} files/s "
           f"(cooloff / lsyncd delay {c.cooloff} s)", "",
           "| Tool | p50 | p99 | max | lost | Target |", "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for tool, values in report.latency.items():
        done = [v for v in values if v != float("inf")]
        p50, p99 = (_pct(done, 0.5), _pct(done, 0.99)) if done else (float("nan"), float("nan"))
        target = ""
        if tool == "surge":
            met = p50 <= c.cooloff + 1 and p99 <= c.cooloff + 3 and len(done) == len(values)
            target = f"p50 <= {c.cooloff + 1} s, p99 <= {c.cooloff + 3} s: {'met' if met else '**not met**'}"
        out.append(f"| {tool} | {p50:.2f} s | {p99:.2f} s | {max(done, default=0):.2f} s | "
                   f"{len(values) - len(done)} | {target} |")  # fmt: skip
    out += ["", f"### Idle: {c.idle_files:,} files watched for {c.idle_seconds:g} s"
            f"{' after the initial sync' if c.idle_initial else ' (surge with --no-scan: no initial sync)'}", "",
            "| Tool | CPU | share of a core | memory (RSS) | Target |", "|---|---:|---:|---:|---|"]  # fmt: skip
    for tool, (cpu, rss) in report.idle.items():
        share = cpu / c.idle_seconds * 100
        target = ""
        if tool == "surge":
            target = f"<= 1 %, <= 300 MB: {'met' if share <= 1 and rss <= 300 else '**not met**'}"
        out.append(f"| {tool} | {cpu:.2f} s | {share:.2f} % | {rss:.0f} MiB | {target} |")
    s, r = report.rename.get("surge", {}), report.rename.get("rsync", {})
    if s:
        moved = [ln for ln in s["lines"] if ln == ("moved", "SYNCHRONIZED(mov)")]  # type: ignore[attr-defined]
        resent = len(s["lines"]) - len(moved)  # type: ignore[arg-type]
        met = len(moved) == 1 and resent == 0 and s["kept_inodes"] == s["files"]
        out += ["", f"### A renamed directory of {c.rename_files:,} files", "",
                f"- surge: {len(moved)} `SYNCHRONIZED(mov)` line, {resent} other line(s) under it, "
                f"{s['kept_inodes']:,} of {s['files']:,} files kept their inode at the destination (no data "
                f"resent); there {s['seconds']:.2f} s after the cooloff. Target (one rename, no data resent): "
                f"{'met' if met else '**not met**'}.",
                f"- rsync -a --delete: {r.get('bytes', -1):,} bytes of file data sent again, {r.get('seconds', 0):.2f} s."]  # fmt: skip
    if report.notes:
        out += ["", *[f"Note: {n}" for n in report.notes]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="continuous_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--cooloff", type=int, default=3)
    parser.add_argument("--idle-files", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--idle-initial", action="store_true", help="surge: initial sync before the idle period"
    )
    parser.add_argument("--rename-files", type=int, default=10_000)
    parser.add_argument(
        "--parts", default="latency,idle,rename", help="which measurements (comma-separated)"
    )
    parser.add_argument("--workdir", help="where the trees go (default: the temporary directory)")
    parser.add_argument(
        "--out", help="write the section into this Markdown file (docs/BENCHMARKS.md)"
    )
    args = parser.parse_args(argv)
    cfg = ContinuousBenchConfig(stream=args.stream, rate=args.rate, cooloff=args.cooloff, idle_files=args.idle_files,
                                idle_seconds=args.idle_seconds, idle_initial=args.idle_initial,
                                rename_files=args.rename_files, workdir=args.workdir,
                                parts=tuple(args.parts.split(",")))  # fmt: skip
    report = run_bench(cfg)
    args_given = argv if argv is not None else sys.argv[1:]
    report.command = " ".join(["python -m bench.continuous_bench", *args_given])
    text = render(report)
    print(text)
    if args.out:
        write_section(args.out, text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())

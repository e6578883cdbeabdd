"""The sync benchmark's configuration and results (bench.sync_bench runs them): one :class:`Step`
per measured command, the Surge/rsync pairs compared against the issue's targets, the report and
its Markdown tables."""

from __future__ import annotations

import shlex
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from common.units import format_bytes

__all__ = ["COMPARISONS", "SECTION", "Comparison", "Report", "Step", "SyncBenchConfig", "comparisons",
           "render"]  # fmt: skip

SECTION = "## Sync: surge sync vs rsync (issue 4)"


@dataclass(frozen=True)
class SyncBenchConfig:
    files: int = 100_000
    big: int = 2 << 30  # bytes; 0 skips the big-file step
    workdir: str = field(default_factory=tempfile.gettempdir)
    repeats: int = 3  # no-change re-syncs, interleaved
    touched: int = 100  # files appended to before the last local re-sync
    remote: bool = True  # the sshd steps
    rate: str = "10g"  # surge sync -l
    timeout: float = 1800.0  # per command
    files_per_dir: int = 100
    min_size: int = 1024
    max_size: int = 10 * 1024
    seed: int = 4
    keep: bool = False  # keep the trees afterwards

    def __post_init__(self) -> None:
        if self.files < 8 or self.repeats < 1 or self.timeout <= 0 or self.big < 0:
            raise ValueError("files must be >= 8; repeats, timeout positive; big >= 0")
        if not 0 < self.touched <= self.files:
            raise ValueError("touched must be between 1 and files")
        if not 0 < self.min_size <= self.max_size:
            raise ValueError("need 0 < min_size <= max_size")


@dataclass
class Step:
    """One measured command (or a repeated one: `seconds` holds every run)."""

    key: str
    label: str
    command: str
    status: str = "not run"  # ok | failed | timeout | mismatch | not run
    seconds: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-min load average just before each run
    summary: str = ""  # surge's own summary line (counts, its elapsed)
    counts: str = ""  # the counts part of it, e.g. "1100 SYNCHRONIZED" or "nothing to do"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds and self.ok else None


@dataclass(frozen=True)
class Comparison:
    name: str
    surge: str  # Step keys
    rsync: str
    target: float | None  # minimum speedup (rsync seconds / surge seconds); None: for reference


COMPARISONS = (
    Comparison("Initial sync of the tree, local → local", "surge-initial", "rsync-initial", 1.5),
    Comparison("No-change re-sync, local → local", "surge-nochange", "rsync-nochange", 1.5),
    Comparison("Floor: bare Python copy, one file at a time, no transport (not Surge)", "floor-copy",
               "rsync-initial", None),
    Comparison("No-change re-sync, `--scan-threads 2`", "surge-nochange-st2", "rsync-nochange", None),
    Comparison("Floor: bare Python stat walk, no records (not Surge)", "floor-walk", "rsync-nochange", None),
    Comparison("No-change re-sync, `--assume-no-mods`", "surge-nochange-anm", "rsync-nochange", 5.0),
    Comparison("No-change re-sync, `--exclude-dirs-older-than`", "surge-nochange-edot", "rsync-nochange", 5.0),
    Comparison("Re-sync after appending a byte to {touched} files", "surge-touched", "rsync-touched", None),
    Comparison("Initial sync over loopback SSH (sshd, `surge agent`)", "surge-ssh-initial", "rsync-ssh-initial", None),
    Comparison("No-change re-sync over loopback SSH", "surge-ssh-nochange", "rsync-ssh-nochange", 3.0),
    Comparison("No-change re-sync over loopback SSH, `--assume-no-mods`", "surge-ssh-nochange-anm",
               "rsync-ssh-nochange", None),
    Comparison("One {big} file, local → local", "surge-big", "rsync-big", 2.0),
)  # fmt: skip


@dataclass
class Report:
    config: SyncBenchConfig
    machine: dict[str, str]
    command: str
    tree: str = ""
    steps: dict[str, Step] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def step(self, key: str, label: str, command: list[str], shorten: Callable[[str], str]) -> Step:
        if key not in self.steps:
            self.steps[key] = Step(key, label, shorten(shlex.join(command)))
        return self.steps[key]

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps.values())


# -- rendering -------------------------------------------------------------------------------


def _secs(step: Step | None) -> str:
    if step is None:
        return "not run"
    if not step.ok:
        return f"**{step.status}**"
    if len(step.seconds) == 1:
        return f"{step.seconds[0]:.2f}"
    return f"{step.median:.2f} ({' '.join(f'{x:.2f}' for x in step.seconds)})"


def _verdict(speedup: float | None, target: float | None, surge: Step | None) -> str:
    if speedup is None:
        return (
            f"not measured (surge sync {surge.status})"
            if surge and not surge.ok
            else "not measured"
        )
    if target is None:
        return "for reference"
    if speedup >= target:
        return f"met ({speedup / target:.2f}× the target)"
    return f"**not met** (needs {target / speedup:.2f}× faster)"


def comparisons(report: Report) -> list[tuple[Comparison, Step | None, Step | None, float | None]]:
    rows = []
    for c in COMPARISONS:
        a, b = report.steps.get(c.surge), report.steps.get(c.rsync)
        if a is None and b is None:
            continue
        speed = b.median / a.median if a and b and a.median and b.median else None
        rows.append((c, a, b, speed))
    return rows


def render(report: Report) -> str:
    cfg, mi = report.config, report.machine
    lines = [
        f"Machine: {mi['nproc']} CPUs ({mi['cpu']}), {mi['memory']} RAM, kernel {mi['kernel']}, Python "
        f"{mi['python']}, {mi['openssh']}, {mi['rsync']}; files on {mi['filesystem']}.",
        "",
        f"Command: `{report.command}`" if report.command else "",
        "",
        f"Tree: {report.tree}. Surge runs `surge sync -N PAIR -d SRC -r DST --create-dir -t -l {cfg.rate}` "
        "(`-t` because `rsync -a` keeps modification times too; the far end a local `surge agent`, "
        "data over UDP on loopback); rsync runs `rsync -a SRC/ DST/`. Each tool has its own destination "
        "and pair, on the same filesystem. Nothing is dropped from the page cache (the source was "
        "just written; the big file is read once before); `sync` runs before each initial copy. No-change "
        f"re-syncs run {cfg.repeats} time(s), interleaved; the table gives the median and every run. "
        "Seconds are wall time from command start to end (Python start-up and agent start-up included). "
        "*Speedup* = rsync seconds / Surge seconds. Every destination was compared with its source "
        "(`diff -rq -x .surge`, `cmp` for the big file), and Surge's summary was checked (no-change runs: "
        '"nothing to do"; the touched run: exactly the touched files).',
        "",
        "| Step | surge sync (s) | rsync (s) | Speedup | Target | Verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c, a, b, speed in comparisons(report):
        name = c.name.format(touched=cfg.touched, big=format_bytes(cfg.big))
        target = f"≥ {c.target:g}×" if c.target else "-"
        lines.append(f"| {name} | {_secs(a)} | {_secs(b)} | {f'{speed:.2f}×' if speed else '-'} | {target} | "
                     f"{_verdict(speed, c.target, a)} |")  # fmt: skip
    lines += ["", "| Step | Command | Seconds | Load (1 min) before | Surge's summary | Status |",
              "|---|---|---:|---:|---|---|"]  # fmt: skip
    for s in report.steps.values():
        load = " ".join(f"{x:.1f}" for x in s.load)
        status = s.status + (f": {s.detail}" if s.detail and not s.ok else "")
        lines.append(f"| {s.label} | `{s.command}` | {_secs(s)} | {load} | {s.summary or '-'} | "
                     f"{status.replace('|', '/')} |")  # fmt: skip
    lines.append("")
    lines += [f"- {n}" for n in report.notes]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"

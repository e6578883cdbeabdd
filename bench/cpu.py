"""CPU seconds of process groups and of the whole machine over a block, from /proc (Linux).

A benchmark on a shared machine needs to say where the machine's limit is: how many of the
cores' seconds the run had (cores x wall), how many the whole machine spent (every process,
other people's work included: /proc/stat), and how many each part of the run took (a group is a
set of root processes and all their descendants: user + system time, plus the time of children
they reaped during the block, so short-lived agents count too).

    meter = CpuMeter({"workers": lambda: worker_pids, "far end": lambda: [server.pid]})
    with meter:
        run()
    meter.result  # CpuUse: wall, machine busy, capacity, seconds per group
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CpuMeter", "CpuUse", "machine_busy", "process_tree_cpu"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, all cores (iowait counts as idle)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already inside user
    return (total - idle) / _TICK, total / _TICK


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, own + reaped children's CPU seconds) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
    return int(rest[1]), sum(int(x) for x in rest[11:15]) / _TICK


def _all() -> dict[int, tuple[int, float]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def process_tree_cpu(
    roots: Iterable[int], table: Mapping[int, tuple[int, float]] | None = None
) -> dict[int, float]:
    """CPU seconds (own + reaped children) of `roots` and every live descendant, by pid."""
    table = _all() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, float] = {}
    todo = [p for p in roots if p in table]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out[pid] = table[pid][1]
            todo.extend(children.get(pid, ()))
    return out


@dataclass
class CpuUse:
    wall: float = 0.0
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    machine: float = 0.0  # CPU seconds the whole machine spent (every process)
    groups: dict[str, float] = field(default_factory=dict)

    @property
    def capacity(self) -> float:
        """CPU seconds the machine had: cores x wall."""
        return self.cores * self.wall

    def as_dict(self) -> dict[str, Any]:
        return {"wall": self.wall, "cores": self.cores, "machine": self.machine, "capacity": self.capacity,
                "groups": dict(self.groups)}  # fmt: skip


def _reaped() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """Measures a block: `groups` maps a name to a function giving the group's root pids (asked
    at the start and at the end, so processes started inside the block are found); `reaped`
    names the group of this process's children that ran and were waited for inside the block
    (a command run with subprocess.run: gone from /proc by the end)."""

    def __init__(
        self, groups: Mapping[str, Callable[[], Iterable[int]]], reaped: str | None = None
    ) -> None:
        self.groups = dict(groups)
        self.reaped = reaped
        self.result = CpuUse()
        self._start: tuple[float, float, float, dict[str, dict[int, float]]] | None = None

    def _sample(self) -> dict[str, dict[int, float]]:
        table = _all()
        return {name: process_tree_cpu(roots(), table) for name, roots in self.groups.items()}

    def __enter__(self) -> CpuMeter:
        self._start = (time.perf_counter(), machine_busy()[0], _reaped(), self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._start is not None
        t0, busy0, reaped0, before = self._start
        after = self._sample()
        self.result = CpuUse(wall=time.perf_counter() - t0, machine=machine_busy()[0] - busy0)
        if self.reaped is not None:
            self.result.groups[self.reaped] = _reaped() - reaped0
        for name, now in after.items():
            was = before.get(name, {})
            # a process present at both ends counts its difference; a new one all it has used
            self.result.groups[name] = sum(v - was.get(pid, 0.0) for pid, v in now.items())

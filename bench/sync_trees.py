"""The sync benchmark's trees (bench.sync_bench): a 3-level tree of small random files, the files
touched before the last re-sync, and the comparisons of a destination with its source."""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass

from bench.sync_report import SyncBenchConfig

__all__ = ["TreeSpec", "files_equal", "make_tree", "touch_files", "trees_equal"]


@dataclass(frozen=True)
class TreeSpec:
    """`fanout`^3 leaf directories `dNN/dNN/dNN`, files spread evenly over them."""

    files: int
    fanout: int

    @classmethod
    def for_files(cls, files: int, per_dir: int) -> TreeSpec:
        return cls(files, max(2, round((files / per_dir) ** (1 / 3))))

    @property
    def leaves(self) -> int:
        return self.fanout**3

    def leaf(self, index: int) -> str:
        k = self.fanout
        a, b, c = index // (k * k), index // k % k, index % k
        return f"d{a:02d}/d{b:02d}/d{c:02d}"

    def path(self, n: int) -> str:
        return f"{self.leaf(n % self.leaves)}/f{n:06d}.bin"


def make_tree(root: str, spec: TreeSpec, cfg: SyncBenchConfig) -> int:
    """Write the tree under `root` (which must not exist); returns the bytes written."""
    rng = random.Random(cfg.seed)
    for i in range(spec.leaves):
        os.makedirs(os.path.join(root, spec.leaf(i)))
    total = 0
    for n in range(spec.files):
        size = rng.randint(cfg.min_size, cfg.max_size)
        with open(os.path.join(root, spec.path(n)), "wb") as fh:
            fh.write(rng.randbytes(size))
        total += size
    return total


def touch_files(root: str, spec: TreeSpec, count: int, seed: int = 4) -> list[str]:
    """Append one byte to `count` files drawn at random from the tree; returns their paths."""
    paths = sorted(spec.path(n) for n in random.Random(seed).sample(range(spec.files), count))
    for p in paths:
        with open(os.path.join(root, p), "ab") as fh:
            fh.write(b"+")
    return paths


def trees_equal(a: str, b: str, timeout: float) -> tuple[bool, str]:
    """Same names, types and contents under `a` and `b` (the snapshot folder left out)."""
    try:
        p = subprocess.run(["diff", "-rq", "--no-dereference", "-x", ".surge", a, b], capture_output=True,
                           text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, "diff timed out"
    if p.returncode == 0:
        return True, ""
    lines = (p.stdout + p.stderr).strip().splitlines()
    return False, f"{len(lines)} difference(s), e.g. " + " | ".join(lines[:3])


def files_equal(a: str, b: str, timeout: float) -> tuple[bool, str]:
    try:
        p = subprocess.run(["cmp", a, b], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "cmp timed out"
    return p.returncode == 0, (p.stdout + p.stderr).strip()

"""Shared helpers of the `surge cp` end-to-end tests (tests/test_cp_e2e_*.py): run `surge` and
`surge cp` as real processes on a free UDP port, build a source tree and compare trees."""

from __future__ import annotations

import filecmp
import os
import socket
import subprocess
import sys
from pathlib import Path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def surge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def cp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return surge("cp", "-O", str(free_udp_port()), *args, timeout=timeout)


def make_tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "emptydir").mkdir()
    (src / "big.bin").write_bytes(os.urandom(3_000_001))
    (src / "sub" / "a.txt").write_text("alpha\n")
    (src / "sub" / "deeper" / "b.dat").write_bytes(os.urandom(70_000))
    (src / "empty").write_bytes(b"")
    (src / "one").write_bytes(b"x")
    return src


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in cmp.common_dirs)

"""`promtool` and `prometheus` for the tests that check Prometheus configuration and PromQL
(test_compose, test_dashboard): taken from PATH, else installed with apt-get (Debian's
`prometheus` package has both); when that is impossible the tests fail, since a skipped check is
not a passed one."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

__all__ = ["ensure_prometheus", "ensure_promtool"]


def ensure_promtool() -> str:
    return _ensure("promtool")


def ensure_prometheus() -> str:
    return _ensure("prometheus")


def _ensure(binary: str) -> str:
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(
            f"{binary} is missing and cannot be installed here (not root or no apt-get)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
    ):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        if p.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(cmd)} failed (exit {p.returncode}): {p.stderr.strip()[-500:]}"
            )
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"{binary} still missing after installing prometheus")
    return found

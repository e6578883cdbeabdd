"""Thin helpers around ``ip``: namespaces, links and the processes inside a namespace."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

from bench.wan.errors import WanSetupError, WanUnavailable

__all__ = [
    "delete_link",
    "delete_netns",
    "ip",
    "link_exists",
    "netns_exists",
    "netns_pids",
    "require_host",
]

#: Seconds a process in a namespace being deleted gets between SIGTERM and SIGKILL.
KILL_GRACE_S = 2.0
#: Seconds any single ``ip``/``tc`` command may take.
COMMAND_TIMEOUT_S = 20.0


def require_host() -> None:
    """Raise :class:`WanUnavailable` unless we are root on Linux with ``ip`` and /dev/net/tun."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise WanUnavailable(
            "the WAN emulator needs root (network namespaces, TUN devices, SCHED_FIFO); "
            f"running as uid {os.geteuid() if hasattr(os, 'geteuid') else '?'}"
        )
    if shutil.which("ip") is None:
        raise WanUnavailable(
            "the WAN emulator needs iproute2's `ip` on PATH (apt-get install iproute2)"
        )
    if not os.path.exists("/dev/net/tun"):
        raise WanUnavailable("the WAN emulator needs /dev/net/tun (kernel TUN support)")


def run_command(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a setup command; on failure raise :class:`WanSetupError` naming it and its stderr."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise WanUnavailable(f"command not found: {argv[0]}") from exc
    if check and done.returncode != 0:
        raise WanSetupError(
            f"`{' '.join(argv)}` failed with exit code {done.returncode}: {done.stderr.strip()}"
        )
    return done


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_command(["ip", *args], check=check)


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join("/run/netns", name))


def link_exists(name: str) -> bool:
    """Whether a network device of that name exists in the root namespace."""
    return os.path.exists(os.path.join("/sys/class/net", name))


def netns_pids(name: str) -> list[int]:
    done = ip("netns", "pids", name, check=False)
    if done.returncode != 0:
        return []
    return [int(tok) for tok in done.stdout.split() if tok.isdigit() and int(tok) != os.getpid()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_netns_processes(name: str, grace_s: float = KILL_GRACE_S) -> list[int]:
    """SIGTERM every process inside namespace ``name``, SIGKILL those still alive after
    ``grace_s``. Returns the pids that were signalled."""
    pids = netns_pids(name)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            break
        time.sleep(0.02)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return pids


def delete_netns(name: str) -> None:
    """Kill whatever runs inside namespace ``name`` and delete it; no error if it is absent."""
    if not netns_exists(name):
        return
    kill_netns_processes(name)
    ip("netns", "delete", name, check=False)
    if netns_exists(name):  # a half-created entry (mount gone): remove the file itself
        try:
            os.unlink(os.path.join("/run/netns", name))
        except OSError:
            pass


def delete_link(name: str) -> None:
    """Delete a device of the root namespace; no error if it is absent."""
    if link_exists(name):
        ip("link", "delete", "dev", name, check=False)

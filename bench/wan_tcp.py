"""The TCP peers of the WAN benchmark, run from namespace a of a :class:`bench.wan.WanLink` to
namespace b: ``rsync -e ssh`` and ``scp`` through an sshd started in b (:class:`NsSshd`), and
``iperf3``."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from functools import partial

from bench.shared import same_content
from bench.sshtools import SshdKeys, wait_for_login
from bench.wan import WanLink
from bench.wan_report import MBIT, BenchConfig, Run

__all__ = ["NsSshd", "ensure_iperf3", "run_iperf", "run_ssh_tool", "wait_listening"]

IPERF_READY_S = 5.0
SSHD_READY_S = 15.0


def ensure_iperf3() -> None:
    if shutil.which("iperf3"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "iperf3"]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {p.stderr.strip()[-300:]}")


class NsSshd:
    """Keys and config made once (:class:`bench.sshtools.SshdKeys`, root login by key only); an
    `sshd -D` started per link in namespace b on port 22 of its address."""

    def __init__(self, directory: str) -> None:
        self.keys = SshdKeys(directory, comment="surge-wan-bench")
        self.cipher = "unknown"

    def start(self, link: WanLink) -> None:
        """Start sshd in namespace b of `link` (stopped with the link); wait until it takes the
        key. Raises SshUnavailable if it does not."""
        argv = self.keys.sshd_argv(link.addr_b, 22)
        log = open(os.path.join(self.keys.directory, "sshd.log"), "ab")  # noqa: SIM115 - owned by sshd
        proc = link.popen("b", argv, stdout=log, stderr=log)
        log.close()
        self.cipher = wait_for_login(self.keys.ssh(), f"root@{link.addr_b}",
                                     alive=lambda: proc.poll() is None, run=partial(link.run, "a"),
                                     timeout=SSHD_READY_S, pause=0.3, what=f"sshd in {link.ns_b}")  # fmt: skip

    def command(self, tool: str, src: str, dst: str, host: str) -> list[str]:
        remote = f"root@{host}:{dst}"
        return self.keys.scp(src, remote) if tool == "scp" else self.keys.rsync(src, remote)


def _dir_bytes(directory: str) -> int:
    total = 0
    for name in os.listdir(directory):
        try:
            total += os.path.getsize(os.path.join(directory, name))
        except OSError:
            pass
    return total


def run_ssh_tool(
    link: WanLink, cfg: BenchConfig, sshd: NsSshd, tool: str, src: str, dst: str, run: Run
) -> None:
    link.set_congestion_control("a", cfg.ssh_cc)
    cmd = sshd.command(tool, src, dst, link.addr_b)
    run.detail = f"{cfg.ssh_cc}; {sshd.cipher}"
    started = time.monotonic()
    proc = link.popen("a", cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                      text=True, start_new_session=True)  # fmt: skip
    try:
        _out, err = proc.communicate(timeout=cfg.timeout)
    except subprocess.TimeoutExpired:
        run.bytes_delivered = _dir_bytes(os.path.dirname(dst))  # rsync's temporary file included
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        run.status, run.seconds = "capped", cfg.timeout
        run.goodput_mbps = run.bytes_delivered * 8 / cfg.timeout / MBIT
        return
    run.seconds = time.monotonic() - started
    if proc.returncode != 0:
        run.status, run.detail = (
            "failed",
            f"{run.detail} | exit {proc.returncode}: {err.strip()[-300:]}",
        )
        return
    run.bytes_delivered = os.path.getsize(dst) if os.path.exists(dst) else 0
    run.goodput_mbps = run.bytes_delivered * 8 / run.seconds / MBIT
    run.status = "ok" if run.bytes_delivered == cfg.size and same_content(src, dst) else "corrupt"


def wait_listening(link: WanLink, side: str, port: int) -> None:
    deadline = time.monotonic() + IPERF_READY_S
    while time.monotonic() < deadline:
        p = link.run(side, ["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True)  # type: ignore[arg-type]
        if p.stdout.strip():
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} in namespace {side}")


def run_iperf(link: WanLink, cfg: BenchConfig, cc: str, run: Run) -> None:
    link.set_congestion_control("a", cc)
    seconds = min(cfg.iperf_seconds, cfg.timeout)
    cmd = ["iperf3", "-c", link.addr_b, "-t", f"{seconds:g}", "-J"]
    run.detail = shlex.join(cmd)
    try:
        p = link.run("a", cmd, capture_output=True, text=True, timeout=seconds + 30)
        data = json.loads(p.stdout)
    except (subprocess.TimeoutExpired, ValueError) as exc:
        run.status, run.detail = "failed", f"{run.detail} | {type(exc).__name__}"
        return
    if "error" in data:
        run.status, run.detail = "failed", f"{run.detail} | {data['error']}"
        return
    end = data["end"]
    received = end["sum_received"]
    run.bytes_delivered = int(received["bytes"])
    run.seconds = float(received["seconds"])
    run.goodput_mbps = run.bytes_delivered * 8 / run.seconds / MBIT
    run.retransmits = int(end["sum_sent"].get("retransmits", 0))
    used = end.get("sender_tcp_congestion", "?")
    run.detail += f" | congestion control {used}"
    run.status = "ok" if used == cc else "failed"

"""One `surge cp` from namespace a of a :class:`bench.wan.WanLink` to an agent in namespace b,
watched live (:class:`SurgeFlow`; bench.wan_bench, bench.wan_fairness, tests/test_wan_transfer.py).

The copy runs in a child process in namespace a, ``python -m bench.wan_flow SPEC`` (:func:`_driver`),
which reports the sender's statistics as JSON lines on its stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, REPO_ROOT)

from bench.wan import WanLink  # noqa: E402

__all__ = ["SurgeFlow"]

_SAMPLE_KEYS = ("bytes_total", "bytes_sent", "bytes_retransmitted", "bytes_acked", "elapsed", "srtt",
                "min_rtt", "loss", "rate_rate", "rate_queue_delay", "rate_phase")  # fmt: skip


def _driver(spec: dict[str, Any]) -> int:
    """Runs inside namespace a: one `run_copy` whose far end is `workers.agent` in namespace b.
    Writes JSON lines to stdout: progress samples, then one line with ``"final": true``."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr  # nothing else may write into the JSON stream
    from coordinator.cp.client import run_copy
    from coordinator.cp.endpoint import CommandEndpoint
    from coordinator.cp.options import parse_cp_args

    ns_b, addr_b = spec["ns_b"], spec["addr_b"]

    def endpoint(_opts: Any) -> CommandEndpoint:
        argv = [
            "ip",
            "netns",
            "exec",
            ns_b,
            sys.executable,
            "-m",
            "workers.agent",
            "--bind",
            addr_b,
        ]
        return CommandEndpoint(argv, addr_b)

    def emit(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg, default=str) + "\n")

    def progress(stats: dict[str, Any]) -> None:
        emit({"t": time.time(), **{k: stats.get(k) for k in _SAMPLE_KEYS}})

    try:
        r = run_copy(
            parse_cp_args(list(spec["argv"])), endpoint_factory=endpoint, progress=progress
        )
    except Exception as exc:  # reported to the parent, which decides
        emit({"final": True, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    import resource

    own, agent = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    emit({"final": True, "ok": r.ok, "elapsed": r.elapsed, "sender": r.stats.get("sender", {}),
          "receiver": r.stats.get("receiver", {}), "errors": [list(e) for e in r.errors],
          "status": list(r.status.values()),
          "cpu": {"sender_s": own.ru_utime + own.ru_stime, "agent_s": agent.ru_utime + agent.ru_stime}})  # fmt: skip
    return 0 if r.ok else 1


class SurgeFlow:
    """One `surge cp ARGV` from namespace a of `link` to an agent in namespace b, watched live.

    ``samples`` collects the sender's statistics about four times a second (with a wall-clock
    time ``t``); ``final`` is the result once it ends. ``stop()`` kills the copy and its agent."""

    def __init__(self, link: WanLink, argv: Sequence[str], label: str = "surge") -> None:
        self.link, self.argv, self.label = link, list(argv), label
        self.samples: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self.started_at = 0.0
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._stderr: IO[str] | None = None

    def start(self) -> SurgeFlow:
        spec = {"argv": self.argv, "ns_b": self.link.ns_b, "addr_b": self.link.addr_b}
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])),
        )
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by the finaliser with the flow
        self.started_at = time.time()
        self._proc = self.link.popen("a", [sys.executable, "-m", "bench.wan_flow", json.dumps(spec)],
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=REPO_ROOT,
                                     env=env, start_new_session=True)  # fmt: skip
        self._reader = threading.Thread(target=self._read, name=f"{self.label}-reader", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("final"):
                self.final = msg
            else:
                self.samples.append(msg)

    def wait(self, timeout: float) -> bool:
        """True when the copy ended (well or not) within `timeout` seconds."""
        assert self._proc is not None and self._reader is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self._reader.join(5)
        return True

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)  # the driver and the agent it started
            except ProcessLookupError:
                pass
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(5)

    @property
    def errors(self) -> str:
        """The driver's error, or the tail of its stderr."""
        if self.final and self.final.get("error"):
            return str(self.final["error"])
        if self.final and not self.final.get("ok"):
            return f"errors={self.final.get('errors')} status={self.final.get('status')}"
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-400:].strip()

    def acked_between(self, t0: float, t1: float) -> float | None:
        """File bytes acknowledged per second between wall times t0 and t1 (from the samples)."""
        pts = [(s["t"], s["bytes_acked"]) for s in self.samples if s.get("bytes_acked") is not None]
        before = [p for p in pts if p[0] <= t0]
        after = [p for p in pts if p[0] >= t1]
        if not before or not after:
            inside = [p for p in pts if t0 <= p[0] <= t1]
            if len(inside) < 2:
                return None
            (ta, a), (tb, b) = inside[0], inside[-1]
        else:
            (ta, a), (tb, b) = before[-1], after[0]
        return (b - a) / (tb - ta) if tb > ta else None


if __name__ == "__main__":
    sys.exit(_driver(json.loads(sys.argv[1])))

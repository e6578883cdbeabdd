"""The two ways to shape the link between the namespaces, behind one small interface.

* :class:`TunBackend`: a TUN device in each namespace, joined by the user-space emulator process
  (:mod:`bench.wan.emulator`). Works on any kernel with TUN.
* :class:`NetemBackend`: a veth pair with ``tc netem`` on each end, where the kernel has netem.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from bench.wan import netns
from bench.wan.errors import WanError, WanSetupError
from bench.wan.spec import LinkSpec
from bench.wan.tun import open_tun

if TYPE_CHECKING:
    from bench.wan.link import WanLink

__all__ = ["Backend", "NetemBackend", "TunBackend", "netem_available"]

#: Seconds the emulator may take to start and report ready.
EMULATOR_START_TIMEOUT_S = 15.0
#: Seconds the emulator may take to answer a statistics request or to quit.
EMULATOR_REPLY_TIMEOUT_S = 5.0
#: Longest reply line accepted from the emulator.
REPLY_LIMIT_BYTES = 1 << 20
#: Where the emulator's pid is recorded, so that a later run can stop a stale one.
PID_DIR = "/run/surge-wan"

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Backend(Protocol):
    def start(self, link: WanLink) -> None: ...

    def stop(self) -> None: ...

    def statistics(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- TUN + emulator


class TunBackend:
    """Two TUN devices (created here, then moved into the namespaces) and the emulator process."""

    def __init__(
        self, forward: LinkSpec, backward: LinkSpec, *, cpu: int | None, rt_priority: int
    ) -> None:
        self.forward = forward
        self.backward = backward
        self.cpu = cpu
        self.rt_priority = rt_priority
        self.process: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self._ctl_fd: int | None = None
        self._reply_fd: int | None = None
        self._reply_buffer = b""
        self._pidfile: str | None = None
        self._lock = threading.Lock()

    @staticmethod
    def pidfile(prefix: str) -> str:
        return os.path.join(PID_DIR, f"{prefix}.pid")

    @classmethod
    def kill_stale(cls, prefix: str) -> None:
        """SIGKILL an emulator left running by a crashed run with the same prefix."""
        path = cls.pidfile(prefix)
        try:
            with open(path) as fh:
                pid = int(fh.read().strip() or 0)
        except (OSError, ValueError):
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except OSError:
            cmdline = []
        if b"bench.wan.emulator" in cmdline and f"{prefix}-a,{prefix}-b".encode() in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.unlink(path)
        except OSError:
            pass

    def start(self, link: WanLink) -> None:
        fds: list[int] = []
        try:
            fd_a = open_tun(link.dev_a)
            fds.append(fd_a)
            fd_b = open_tun(link.dev_b)
            fds.append(fd_b)
            netns.ip("link", "set", "dev", link.dev_a, "netns", link.ns_a)
            netns.ip("link", "set", "dev", link.dev_b, "netns", link.ns_b)
            ctl_r, ctl_w = os.pipe()
            fds += [ctl_r, ctl_w]
            reply_r, reply_w = os.pipe()
            fds += [reply_r, reply_w]
            self.process = subprocess.Popen(
                self._argv(link, fd_a, fd_b, ctl_r, reply_w),
                pass_fds=(fd_a, fd_b, ctl_r, reply_w),
                stdin=subprocess.DEVNULL,
                env=self._env(),
                start_new_session=True,  # a terminal's SIGINT is ours to handle, not its
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        # The emulator holds the TUN fds and its ends of the pipes; we keep the other ends only.
        for fd in (fd_a, fd_b, ctl_r, reply_w):
            os.close(fd)
        self._ctl_fd = ctl_w
        self._reply_fd = reply_r
        os.makedirs(PID_DIR, exist_ok=True)
        self._pidfile = self.pidfile(link.prefix)
        with open(self._pidfile, "w") as fh:
            fh.write(f"{self.process.pid}\n")
        self.ready = self._read_reply(EMULATOR_START_TIMEOUT_S)
        if not self.ready.get("ready"):
            raise WanSetupError(f"the emulator did not start: {self.ready}")

    def _argv(self, link: WanLink, fd_a: int, fd_b: int, ctl_r: int, reply_w: int) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "bench.wan.emulator",
            "--tun-a",
            str(fd_a),
            "--tun-b",
            str(fd_b),
            "--ctl",
            str(ctl_r),
            "--reply",
            str(reply_w),
            "--forward",
            json.dumps(self.forward.to_json()),
            "--backward",
            json.dumps(self.backward.to_json()),
            "--mtu",
            str(link.mtu),
            "--rt-priority",
            str(self.rt_priority),
            "--orphan-netns",
            f"{link.ns_a},{link.ns_b}",
            "--pidfile",
            self.pidfile(link.prefix),
        ]
        if self.cpu is not None:
            argv += ["--cpu", str(self.cpu)]
        return argv

    @staticmethod
    def _env() -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, env.get("PYTHONPATH")) if p)
        return env

    def _read_reply(self, timeout_s: float) -> dict[str, Any]:
        assert self._reply_fd is not None and self.process is not None
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._reply_buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WanSetupError(f"the emulator did not answer within {timeout_s} s")
            ready, _, _ = select.select([self._reply_fd], [], [], min(remaining, 0.2))
            if not ready:
                if self.process.poll() is not None:
                    raise WanSetupError(
                        f"the emulator exited with code {self.process.returncode} "
                        "(its stderr is above)"
                    )
                continue
            chunk = os.read(self._reply_fd, 65536)
            if not chunk:
                raise WanSetupError(f"the emulator exited (code {self.process.poll()})")
            self._reply_buffer += chunk
            if len(self._reply_buffer) > REPLY_LIMIT_BYTES:
                raise WanSetupError(f"emulator reply longer than {REPLY_LIMIT_BYTES} bytes")
        line, self._reply_buffer = self._reply_buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def statistics(self) -> dict[str, Any]:
        with self._lock:
            if self._ctl_fd is None:
                raise WanError("the emulator is not running")
            os.write(self._ctl_fd, b"s\n")
            stats = self._read_reply(EMULATOR_REPLY_TIMEOUT_S)
        stats["backend"] = "tun"
        return stats

    def stop(self) -> None:
        with self._lock:
            if self._ctl_fd is not None:
                try:
                    os.write(self._ctl_fd, b"q\n")
                except OSError:
                    pass
            if self.process is not None:
                try:
                    self.process.wait(timeout=EMULATOR_REPLY_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            for fd in (self._ctl_fd, self._reply_fd):
                if fd is not None:
                    os.close(fd)
            self._ctl_fd = self._reply_fd = None
            if self._pidfile is not None:
                try:
                    os.unlink(self._pidfile)
                except OSError:
                    pass
                self._pidfile = None


# --------------------------------------------------------------------------- veth + netem

_netem_cache: tuple[bool, str] | None = None


def netem_available(with_reason: bool = False) -> Any:
    """Whether ``tc qdisc add ... netem`` works here, tried once on a veth pair inside a
    throw-away namespace (nothing in the root namespace is touched). Cached for the process.

    Returns a bool, or ``(bool, reason)`` with ``with_reason=True``."""
    global _netem_cache
    if _netem_cache is None:
        _netem_cache = _probe_netem()
    return _netem_cache if with_reason else _netem_cache[0]


def _probe_netem() -> tuple[bool, str]:
    try:
        netns.require_host()
    except WanError as exc:
        return False, str(exc)
    name = f"surgenetem{os.getpid()}"
    try:
        netns.ip("netns", "add", name)
        netns.ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        done = netns.run_command(
            ["tc", "-n", name, "qdisc", "add", "dev", "v0", "root", "netem", "delay", "1ms"],
            check=False,
        )
        if done.returncode != 0:
            return False, f"`tc qdisc add ... netem` failed: {done.stderr.strip()}"
        return True, "netem works"
    except WanError as exc:
        return False, str(exc)
    finally:
        netns.delete_netns(name)


class NetemBackend:
    """A veth pair across the namespaces, each end's egress shaped by ``tc netem``.

    Approximations of netem compared with the TUN emulator: its ``limit`` counts packets (the byte
    queue is converted at the MTU, plus the packets in flight during the delay), and loss and
    queue drops are reported together as ``packets_dropped``."""

    def __init__(self, forward: LinkSpec, backward: LinkSpec) -> None:
        self.forward = forward
        self.backward = backward
        self._link: WanLink | None = None

    @staticmethod
    def netem_args(spec: LinkSpec, mtu: int) -> list[str]:
        in_flight = spec.rate_bps * spec.one_way_delay_ms / 1000.0 / 8.0
        limit = max(1, int((spec.effective_queue_bytes + in_flight) // mtu) + 1)
        args = ["delay", f"{spec.one_way_delay_ms}ms"]
        if spec.jitter_ms:
            args += [f"{spec.jitter_ms}ms"]
        if spec.loss:
            args += ["loss", "random", f"{spec.loss * 100}%"]
        args += ["rate", f"{int(spec.rate_bps)}bit", "limit", str(limit)]
        if spec.seed is not None:
            args += ["seed", str(spec.seed)]
        return args

    def start(self, link: WanLink) -> None:
        self._link = link
        netns.ip(
            "link",
            "add",
            link.dev_a,
            "netns",
            link.ns_a,
            "type",
            "veth",
            "peer",
            "name",
            link.dev_b,
            "netns",
            link.ns_b,
        )
        for ns, dev, spec in (
            (link.ns_a, link.dev_a, self.forward),
            (link.ns_b, link.dev_b, self.backward),
        ):
            netns.run_command(
                [
                    "tc",
                    "-n",
                    ns,
                    "qdisc",
                    "add",
                    "dev",
                    dev,
                    "root",
                    "netem",
                    *self.netem_args(spec, link.mtu),
                ]
            )
            netns.ip("-n", ns, "link", "set", "dev", dev, "txqueuelen", "1000")

    def statistics(self) -> dict[str, Any]:
        link = self._link
        assert link is not None
        out: dict[str, Any] = {"backend": "netem"}
        for key, ns, dev in (("a_to_b", link.ns_a, link.dev_a), ("b_to_a", link.ns_b, link.dev_b)):
            done = netns.run_command(["tc", "-s", "-j", "-n", ns, "qdisc", "show", "dev", dev])
            qdiscs = [q for q in json.loads(done.stdout or "[]") if q.get("kind") == "netem"]
            q = qdiscs[0] if qdiscs else {}
            out[key] = {
                "packets_forwarded": q.get("packets"),
                "bytes_forwarded": q.get("bytes"),
                "packets_dropped": q.get("drops"),
                "backlog_bytes": q.get("backlog"),
            }
        return out

    def stop(self) -> None:
        self._link = None  # the veth pair goes with the namespaces

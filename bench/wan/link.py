"""``WanLink``: two network namespaces joined by an emulated link, as a context manager."""

from __future__ import annotations

import atexit
import dataclasses
import os
import re
import signal
import subprocess
import threading
import types
from collections.abc import Sequence
from typing import Any, Literal, Self

from bench.wan import netns
from bench.wan.backends import Backend, NetemBackend, TunBackend, netem_available
from bench.wan.errors import WanError, WanSetupError, WanUnavailable
from bench.wan.spec import LinkSpec

__all__ = ["Side", "WanLink"]

Side = Literal["a", "b"]

#: Prefixes become namespace and interface names (``{prefix}-a``): at most 13 safe characters.
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,12}$")
#: Addresses from the benchmarking range 198.18.0.0/15 (RFC 2544); one /30 per link.
ADDR_A = "198.18.0.1"
ADDR_B = "198.18.0.2"
PREFIX_LEN = 30
#: Seconds a process started by ``popen`` gets between SIGTERM and SIGKILL at exit.
PROCESS_GRACE_S = 2.0

_open_links: set[WanLink] = set()
_open_links_lock = threading.Lock()


def _close_all_at_exit() -> None:
    with _open_links_lock:
        links = list(_open_links)
    for link in links:
        link.close()


atexit.register(_close_all_at_exit)


class _Terminated(SystemExit):
    """Raised in the main thread by SIGTERM/SIGHUP so that ``with WanLink(...)`` unwinds."""


class WanLink:
    """Namespaces ``{prefix}-a`` and ``{prefix}-b`` joined by an emulated link.

    ``spec`` shapes A->B, ``reverse`` (default: the same as ``spec``, with an independent random
    stream) shapes B->A. Each direction's one-way delay is its own ``rtt_ms / 2``.

    Backends: ``"tun"`` (default; a user-space emulator process between two TUN devices),
    ``"netem"`` (veth + ``tc netem``, where the kernel has it) or ``"auto"`` (netem if available).

    Entering deletes any stale namespace or device of the same prefix, then builds the link;
    leaving (normally, on an exception, on SIGINT/SIGTERM/SIGHUP or at interpreter exit) stops
    the processes started with :meth:`popen` and everything else left in the namespaces, stops the
    emulator and deletes the namespaces and devices. If this process is killed outright, the
    emulator notices and deletes the namespaces itself.
    """

    def __init__(
        self,
        spec: LinkSpec,
        reverse: LinkSpec | None = None,
        prefix: str = "surge",
        *,
        backend: Literal["tun", "netem", "auto"] = "tun",
        cpu: int | None = -1,
        rt_priority: int = 50,
        mtu: int = 1500,
    ) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ValueError(
                f"prefix must match {_PREFIX_RE.pattern} (it names namespaces and devices), "
                f"got {prefix!r}"
            )
        if backend not in ("tun", "netem", "auto"):
            raise ValueError(f"backend must be 'tun', 'netem' or 'auto', got {backend!r}")
        if not 576 <= mtu <= 9000:
            raise ValueError(f"mtu must be within 576..9000, got {mtu!r}")
        self.spec = spec
        if reverse is None:
            seed = None if spec.seed is None else spec.seed + 1
            reverse = dataclasses.replace(spec, seed=seed)
        self.reverse = reverse
        self.prefix = prefix
        self.ns_a = f"{prefix}-a"
        self.ns_b = f"{prefix}-b"
        self.dev_a = f"{prefix}-a"
        self.dev_b = f"{prefix}-b"
        self.addr_a = ADDR_A
        self.addr_b = ADDR_B
        self.mtu = mtu
        self._backend_name = backend
        self._cpu = cpu
        self._rt_priority = rt_priority
        self._backend: Backend | None = None
        self._processes: list[subprocess.Popen[Any]] = []
        self._previous_handlers: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._open = False

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        if not self._open:  # ``with link:`` after an explicit ``link.open()`` is fine
            self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Build the link (what ``__enter__`` does). Cleans up and re-raises on any failure."""
        if self._open:
            raise WanError(f"WanLink {self.prefix!r} is already open")
        netns.require_host()
        backend = self._choose_backend()
        self._install_signal_handlers()
        with _open_links_lock:
            _open_links.add(self)
        self._open = True
        try:
            self._remove_stale()
            for name in (self.ns_a, self.ns_b):
                netns.ip("netns", "add", name)
                netns.ip("-n", name, "link", "set", "lo", "up")
                # No IPv6 on the link: router solicitations and MLD would only add noise.
                netns.run_command(
                    [
                        "ip",
                        "netns",
                        "exec",
                        name,
                        "sh",
                        "-c",
                        (
                            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
                            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"
                        ),
                    ],
                    check=False,
                )
            self._backend = backend
            backend.start(self)
            for ns, dev, addr in (
                (self.ns_a, self.dev_a, self.addr_a),
                (self.ns_b, self.dev_b, self.addr_b),
            ):
                netns.ip("-n", ns, "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", dev)
                netns.ip(
                    "-n",
                    ns,
                    "link",
                    "set",
                    "dev",
                    dev,
                    "mtu",
                    str(self.mtu),
                    "txqueuelen",
                    "1000",
                    "up",
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Tear everything down; idempotent, never raises for a missing piece."""
        with self._lock:
            if not self._open:
                return
            self._open = False
        try:
            self._stop_processes()
            if self._backend is not None:
                self._backend.stop()
            for name in (self.ns_a, self.ns_b):
                netns.delete_netns(name)
            for name in (self.dev_a, self.dev_b):
                netns.delete_link(name)
        finally:
            self._backend = None
            self._restore_signal_handlers()
            with _open_links_lock:
                _open_links.discard(self)

    def _choose_backend(self) -> Backend:
        kind = self._backend_name
        if kind == "auto":
            kind = "netem" if netem_available() else "tun"
        if kind == "netem":
            available, reason = netem_available(with_reason=True)
            if not available:
                raise WanUnavailable(f"the netem backend is unavailable here: {reason}")
            return NetemBackend(self.spec, self.reverse)
        cpu = self._cpu
        if cpu is not None and cpu < 0:
            allowed = sorted(os.sched_getaffinity(0))
            cpu = allowed[cpu] if len(allowed) > 1 else None
        return TunBackend(self.spec, self.reverse, cpu=cpu, rt_priority=self._rt_priority)

    def _remove_stale(self) -> None:
        """Delete what a crashed run with the same prefix may have left behind."""
        TunBackend.kill_stale(self.prefix)
        for name in (self.ns_a, self.ns_b):
            netns.delete_netns(name)
        for name in (self.dev_a, self.dev_b):
            netns.delete_link(name)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def terminate(signum: int, frame: Any) -> None:
            raise _Terminated(128 + signum)

        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(signum)
            if previous in (signal.SIG_DFL, None):
                self._previous_handlers[signum] = previous
                signal.signal(signum, terminate)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous_handlers.clear()

    def _stop_processes(self) -> None:
        running = [p for p in self._processes if p.poll() is None]
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(timeout=PROCESS_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._processes.clear()

    # ----------------------------------------------------------------- use

    def namespace(self, side: Side) -> str:
        if side == "a":
            return self.ns_a
        if side == "b":
            return self.ns_b
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")

    def address(self, side: Side) -> str:
        """The IPv4 address of ``side`` (the other side reaches it there)."""
        return self.addr_a if self.namespace(side) == self.ns_a else self.addr_b

    def device(self, side: Side) -> str:
        return self.dev_a if self.namespace(side) == self.ns_a else self.dev_b

    def command(self, side: Side, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside ``side``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(side), *argv]

    def popen(self, side: Side, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``side``'s namespace; it is stopped when the link closes."""
        self._require_open()
        proc: subprocess.Popen[Any] = subprocess.Popen(self.command(side, argv), **kw)
        self._processes = [p for p in self._processes if p.poll() is None]
        self._processes.append(proc)
        return proc

    def run(self, side: Side, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside ``side``'s namespace to completion (``subprocess.run`` keywords)."""
        self._require_open()
        check = kw.pop("check", False)
        return subprocess.run(self.command(side, argv), check=check, **kw)

    def set_congestion_control(self, side: Side, name: str) -> None:
        """Make TCP from ``side`` to the other side use congestion control ``name``.

        A namespace cannot change its default algorithm here, so this installs a host route to
        the peer with ``congctl NAME``, which takes precedence over the connected /30 route."""
        self._require_open()
        with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as fh:
            available = fh.read().split()
        if name not in available:
            raise WanSetupError(
                f"congestion control {name!r} is not available (kernel offers: {available})"
            )
        peer = self.addr_b if side == "a" else self.addr_a
        netns.ip(
            "-n",
            self.namespace(side),
            "route",
            "replace",
            f"{peer}/32",
            "dev",
            self.device(side),
            "src",
            self.address(side),
            "congctl",
            name,
        )

    def statistics(self) -> dict[str, Any]:
        """Counters per direction (``a_to_b``, ``b_to_a``) plus backend details."""
        self._require_open()
        assert self._backend is not None
        return self._backend.statistics()

    def _require_open(self) -> None:
        if not self._open or self._backend is None:
            raise WanError(f"WanLink {self.prefix!r} is not open (use it as a context manager)")

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<WanLink {self.prefix} {state} A->B {self.spec} B->A {self.reverse}>"

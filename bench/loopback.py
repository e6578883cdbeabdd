"""Loopback benchmark (issue 2): `surge cp` against a raw Python UDP ceiling, scp and rsync.

One run copies the same file (random data, kept in the page cache; made once and reused) with
every tool, in rounds, dropping the destination between copies:

* ``surge cp -l RATE`` with AES-128-GCM (the default cipher) and with ``-c none``, at the
  loopback default datagram (65507-byte UDP payload) and at ``-Z 9000`` (8972-byte payload);
* the raw baseline of :mod:`bench.rawudp` at the same payload sizes, with and without GCM;
* ``scp`` and ``rsync -e ssh`` to a private sshd on 127.0.0.1 that the bench starts and stops.

It prints one table with throughput (GB/s = 10^9 bytes/s), the ratios the issue sets targets for
and the receiving agent's peak RSS, and can write it as a section of ``docs/BENCHMARKS.md`` or as
JSON. Usage: ``python -m bench.loopback [--size 2G] [--runs 1] [--out FILE.md|FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.rawudp import RawConfig, RawError, run_raw
from common.units import UnitError, format_bytes, parse_size

__all__ = ["SECTION", "BenchConfig", "Case", "LocalSshd", "Measurement", "Report", "SshUnavailable",
           "cases", "from_json", "render", "run_bench", "to_json", "write_section"]  # fmt: skip

SECTION = "## Loopback: surge cp vs raw UDP, scp, rsync (issue 2)"
TOOLS = ("surge", "raw", "scp", "rsync")
PAYLOADS = (65507, 8972)  # loopback default; -Z 9000 (the reference numbers' datagram)
TARGET_VS_RAW = 0.5
TARGET_VS_SCP = 3.0
TARGET_RSS = 200 * 10**6
GB = 1e9


@dataclass(frozen=True)
class BenchConfig:
    size: int = 2 << 30
    runs: int = 1
    workdir: str = field(default_factory=tempfile.gettempdir)
    timeout: float = 300.0  # per tool run
    tools: tuple[str, ...] = TOOLS
    rate: str = "20g"
    verify: bool = True  # compare every destination with the source
    keep_source: bool = True

    def __post_init__(self) -> None:
        if self.size <= 0 or self.runs <= 0 or self.timeout <= 0:
            raise ValueError("size, runs and timeout must be positive")
        unknown = set(self.tools) - set(TOOLS)
        if unknown:
            raise ValueError(f"unknown tools {sorted(unknown)}; choose from {TOOLS}")


@dataclass(frozen=True)
class Case:
    tool: str  # surge | raw | scp | rsync
    cipher: str  # aes128gcm | none | the ssh default
    payload: int | None  # UDP payload bytes; None for the ssh tools

    @property
    def label(self) -> str:
        if self.tool == "surge":
            flags = ["-c none"] if self.cipher == "none" else []
            flags += ["-Z 9000"] if self.payload == 8972 else []
            return " ".join(["surge cp", *flags])
        if self.tool == "raw":
            return "raw UDP" + (" + AES-128-GCM" if self.cipher != "none" else "")
        return "scp" if self.tool == "scp" else "rsync -e ssh"


@dataclass
class Measurement:
    case: Case
    run: int
    status: str  # ok | timeout | failed | incomplete | corrupt | unavailable
    bytes_received: int = 0
    wall: float | None = None  # command start to finish, as this process sees it
    data: float | None = None  # data phase: surge's sender session, the raw sink's first..last
    retransmitted: int | None = None
    rss: int | None = None  # receiving process's peak RSS
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Report:
    config: BenchConfig
    machine: dict[str, str]
    command: str
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cases(tools: tuple[str, ...]) -> list[Case]:
    """The copies of one round, each Surge case next to its raw counterpart."""
    out: list[Case] = []
    for payload in PAYLOADS:
        for surge_cipher, raw_cipher in (("aes128gcm", "aes128gcm"), ("none", "none")):
            if "surge" in tools:
                out.append(Case("surge", surge_cipher, payload))
            if "raw" in tools:
                out.append(Case("raw", raw_cipher, payload))
    out += [Case(t, "ssh default", None) for t in ("scp", "rsync") if t in tools]
    return out


# -- machine and files -----------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    return ((p.stdout or p.stderr).strip().splitlines() or ["n/a"])[0]


def machine_info(workdir: str) -> dict[str, str]:
    model = "unknown"
    mem = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model
            )
        with open("/proc/meminfo") as fh:
            mem = f"{int(fh.readline().split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    import cryptography

    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssh": _first_line(["ssh", "-V"]),
        "rsync": _first_line(["rsync", "--version"]),
        "filesystem": _first_line(["findmnt", "-no", "SOURCE,FSTYPE", "-T", workdir]),
    }


def prepare_source(directory: str, size: int) -> str:
    """A file of `size` random bytes in `directory` (reused when there), read once into the
    page cache."""
    path = os.path.join(directory, f"source-{size}.bin")
    if not (os.path.exists(path) and os.path.getsize(path) == size):
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            left = size
            while left:
                n = min(left, 1 << 20)
                fh.write(os.urandom(n))
                left -= n
        os.replace(tmp, path)
    with open(path, "rb", buffering=0) as fh:  # warm the page cache
        buf = bytearray(1 << 20)
        while fh.readinto(buf):
            pass
    return path


def _own_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def same_content(a: str, b: str) -> bool:
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _drop(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    os.sync()  # the next tool starts without the last one's dirty pages


# -- a private sshd for scp and rsync ---------------------------------------------------------

SSHD = "/usr/sbin/sshd"
_SSH_PACKAGES = ((SSHD, "openssh-server"), ("ssh", "openssh-client"), ("scp", "openssh-client"),
                 ("rsync", "rsync"), ("ssh-keygen", "openssh-client"))  # fmt: skip


class SshUnavailable(Exception):
    """sshd, scp or rsync cannot be installed or started; the message says why."""


def ensure_ssh_tools() -> None:
    """Install what is missing of openssh-server, openssh-client and rsync (root, apt-get)."""
    missing = sorted({pkg for exe, pkg in _SSH_PACKAGES if not shutil.which(exe)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SshUnavailable(
            f"missing {', '.join(missing)} and cannot install them (not root or no apt-get)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise SshUnavailable(f"{shlex.join(cmd)} failed: {p.stderr.strip()[-300:]}")
    still = sorted({pkg for exe, pkg in _SSH_PACKAGES if not shutil.which(exe)})
    if still:
        raise SshUnavailable(f"still missing after apt-get install: {', '.join(still)}")


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalSshd:
    """`sshd -D` on 127.0.0.1 with a temporary host key, a temporary client key in its
    authorized_keys and its own config; `start()` is a context manager that always stops it and
    removes its directory."""

    def __init__(self, directory: str, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.directory, self.port, self._proc = directory, port, proc
        self.user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
        key = os.path.join(directory, "client_key")
        self.ssh_options = ["-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes",
                            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]  # fmt: skip
        self.cipher = "unknown"
        self.scp_mode = "SFTP (OpenSSH >= 9 default)"

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[LocalSshd]:
        """Raises SshUnavailable when it cannot be installed or started."""
        ensure_ssh_tools()
        directory = tempfile.mkdtemp(prefix="surge-bench-sshd-")
        proc: subprocess.Popen[bytes] | None = None
        try:
            proc, port = cls._launch(directory)
            sshd = cls(directory, port, proc)
            sshd._wait_ready()
        except (
            OSError,
            subprocess.CalledProcessError,
            subprocess.TimeoutExpired,
            SshUnavailable,
        ) as exc:
            cls._stop(proc, directory)
            raise SshUnavailable(f"cannot start sshd: {exc}") from None
        try:
            yield sshd
        finally:
            cls._stop(proc, directory)

    @staticmethod
    def _launch(directory: str) -> tuple[subprocess.Popen[bytes], int]:
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "surge-bench",
                            "-f", os.path.join(directory, name)], check=True)  # fmt: skip
        shutil.copy(
            os.path.join(directory, "client_key.pub"), os.path.join(directory, "authorized_keys")
        )
        port = _free_tcp_port()
        config = os.path.join(directory, "sshd_config")
        with open(config, "w") as fh:
            fh.write("\n".join([
                f"Port {port}", "ListenAddress 127.0.0.1",
                f"HostKey {directory}/host_key", f"PidFile {directory}/sshd.pid",
                f"AuthorizedKeysFile {directory}/authorized_keys",
                "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                "StrictModes no", "UsePAM no", "Subsystem sftp internal-sftp", "",
            ]))  # fmt: skip
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        with open(os.path.join(directory, "sshd.log"), "wb") as log:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config, "-p", str(port)],
                                    stdout=log, stderr=log, start_new_session=True)  # fmt: skip
        return proc, port

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None, directory: str) -> None:
        if proc is not None:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: sshd and its children
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(directory, ignore_errors=True)

    def _ssh(self) -> list[str]:
        return ["ssh", *self.ssh_options, "-p", str(self.port)]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15.0
        err = ""
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            probe = [o.replace("LogLevel=ERROR", "LogLevel=DEBUG1") for o in self._ssh()]
            p = subprocess.run([*probe, f"{self.user}@127.0.0.1", "true"], capture_output=True,
                               text=True, timeout=15)  # fmt: skip
            if p.returncode == 0:
                for line in p.stderr.splitlines():
                    if "kex: client->server cipher:" in line:
                        self.cipher = line.split("cipher:", 1)[1].split()[0]
                return
            err = p.stderr.strip()[-300:]
            time.sleep(0.2)
        with open(os.path.join(self.directory, "sshd.log"), errors="replace") as fh:
            raise SshUnavailable(
                f"sshd did not accept the key: {err} | sshd log: {fh.read()[-300:]}"
            )

    def scp_command(self, src: str, dst: str) -> list[str]:
        return ["scp", *self.ssh_options, "-P", str(self.port), src, f"{self.user}@127.0.0.1:{dst}"]

    def rsync_command(self, src: str, dst: str) -> list[str]:
        return ["rsync", "-e", shlex.join(self._ssh()), src, f"{self.user}@127.0.0.1:{dst}"]


# -- one copy per tool -----------------------------------------------------------------------


def _surge_child(argv: list[str], conn: Any) -> None:
    os.setsid()  # one process group with the agent it starts, so a timeout can end both
    from coordinator.cp.client import run_copy
    from coordinator.cp.options import parse_cp_args

    try:
        r = run_copy(parse_cp_args(argv))
        conn.send({"ok": r.ok, "elapsed": r.elapsed, "stats": r.stats, "errors": r.errors,
                   "status": list(r.status.values())})  # fmt: skip
    except Exception as exc:  # reported, not raised: the bench goes on with the other tools
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def run_surge(case: Case, src: str, dst: str, cfg: BenchConfig, run: int) -> Measurement:
    assert case.payload is not None
    argv = ["-l", cfg.rate, "-c", "none" if case.cipher == "none" else "aes128"]
    argv += ["-Z", str(case.payload + 28)] if case.payload != PAYLOADS[0] else []
    argv += [src, dst]
    ctx = multiprocessing.get_context("fork")
    recv_end, send_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_surge_child, args=(argv, send_end), daemon=True)
    proc.start()
    send_end.close()
    m = Measurement(case, run, "failed", detail="surge cp " + " ".join(argv))
    try:
        if not recv_end.poll(cfg.timeout):
            m.status = "timeout"
            return m
        try:
            msg = recv_end.recv()
        except EOFError:
            m.detail += f" | child died (exit {proc.exitcode})"
            return m
    finally:
        if proc.pid is not None and proc.is_alive() and m.status == "timeout":
            os.killpg(proc.pid, signal.SIGKILL)
        proc.join(10)
        recv_end.close()
    if "error" in msg:
        m.detail += " | " + msg["error"]
        return m
    sender = msg["stats"].get("sender", {})
    receiver = msg["stats"].get("receiver", {})
    m.wall = msg["elapsed"]
    m.data = sender.get("elapsed")
    m.retransmitted = sender.get("bytes_retransmitted")
    m.rss = receiver.get("max_rss_bytes")
    m.bytes_received = int(receiver.get("bytes_received", 0))
    m.status = "ok" if msg["ok"] else "failed"
    if not msg["ok"]:
        m.detail += f" | errors={msg['errors']} status={msg['status']}"
    return m


def run_raw_case(case: Case, src: str, dst: str, cfg: BenchConfig, run: int) -> Measurement:
    assert case.payload is not None
    m = Measurement(case, run, "failed")
    try:
        r = run_raw(src, dst, cfg.size, RawConfig(case.payload, case.cipher), timeout=cfg.timeout)
    except RawError as exc:
        m.status = "timeout" if "timed out" in str(exc) else "failed"
        m.detail = str(exc)
        return m
    m.status = "ok" if r.ok else "incomplete"
    m.bytes_received, m.wall, m.data, m.rss = (
        r.bytes_received,
        r.wall,
        r.elapsed,
        r.sink_max_rss_bytes,
    )
    m.detail = f"gso={r.gso} gro={r.gro} stalls={r.stalls} datagrams={r.datagrams_sent}"
    return m


def run_ssh_tool(
    case: Case, src: str, dst: str, cfg: BenchConfig, run: int, sshd: LocalSshd
) -> Measurement:
    cmd = sshd.scp_command(src, dst) if case.tool == "scp" else sshd.rsync_command(src, dst)
    m = Measurement(case, run, "failed", detail=shlex.join(cmd))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _out, err = proc.communicate(timeout=cfg.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        m.status = "timeout"
        return m
    m.wall = time.monotonic() - started
    if proc.returncode != 0:
        m.detail += f" | exit {proc.returncode}: {err.strip()[-300:]}"
        return m
    m.bytes_received = os.path.getsize(dst) if os.path.exists(dst) else 0
    m.status = "ok"
    return m


# -- the run ---------------------------------------------------------------------------------


@contextmanager
def _maybe_sshd(cfg: BenchConfig, report: Report) -> Iterator[LocalSshd | None]:
    with ExitStack() as stack:
        sshd = None
        if {"scp", "rsync"} & set(cfg.tools):
            try:
                sshd = stack.enter_context(LocalSshd.start())
                report.notes.append(
                    f"ssh cipher negotiated: {sshd.cipher}; scp protocol: {sshd.scp_mode}"
                )
            except SshUnavailable as exc:
                report.notes.append(f"scp/rsync not measured: {exc}")
        yield sshd


def run_bench(cfg: BenchConfig, *, command: str = "", log: Callable[[str], None] = print) -> Report:
    home = os.path.join(cfg.workdir, "surge-bench-loopback")
    os.makedirs(home, exist_ok=True)
    need = cfg.size * (1 if os.path.exists(os.path.join(home, f"source-{cfg.size}.bin")) else 2)
    free = shutil.disk_usage(home).free
    if free < need + (256 << 20):
        raise SystemExit(
            f"not enough space in {home}: {free / GB:.1f} GB free, need {need / GB:.1f} GB"
        )
    report = Report(cfg, machine_info(home), command)
    src = prepare_source(home, cfg.size)
    report.notes.append(f"bench process peak RSS before the copies: {_own_rss() / 1e6:.0f} MB")
    dst_dir = tempfile.mkdtemp(prefix="dst-", dir=home)  # same filesystem as the source
    dst = os.path.join(dst_dir, "copy.bin")
    try:
        with _maybe_sshd(cfg, report) as sshd:
            for run in range(cfg.runs):
                for case in cases(cfg.tools):
                    _drop(dst)
                    if case.tool == "surge":
                        m = run_surge(case, src, dst, cfg, run)
                    elif case.tool == "raw":
                        m = run_raw_case(case, src, dst, cfg, run)
                    elif sshd is None:
                        m = Measurement(case, run, "unavailable")
                    else:
                        m = run_ssh_tool(case, src, dst, cfg, run, sshd)
                    if (
                        m.ok
                        and cfg.verify
                        and not (m.bytes_received == cfg.size and same_content(src, dst))
                    ):
                        m.status = "corrupt"
                    report.measurements.append(m)
                    log(f"run {run + 1}/{cfg.runs} {case.label:34} {case.payload or '':>6} {m.status:10} "
                        f"{_gbps(cfg.size, m.data) or '':>6} {_gbps(cfg.size, m.wall) or '':>6} {m.detail}")  # fmt: skip
                    _drop(dst)
    finally:
        shutil.rmtree(dst_dir, ignore_errors=True)
        if not cfg.keep_source:
            shutil.rmtree(home, ignore_errors=True)
    return report


# -- rendering -------------------------------------------------------------------------------


def _gbps(size: int, seconds: float | None) -> str | None:
    return f"{size / seconds / GB:.3f}" if seconds else None


def _rate(
    report: Report, case: Case, attr: str, pick: Callable[[list[float]], float]
) -> float | None:
    """Throughput (bytes/s) of `case` over the runs by `attr` (wall or data), or None."""
    rates = [report.config.size / getattr(m, attr) for m in report.measurements
             if m.case == case and m.ok and getattr(m, attr)]  # fmt: skip
    return pick(rates) if rates else None


def _fmt(rate: float | None) -> str:
    return f"{rate / GB:.3f}" if rate else "-"


def _paired(report: Report, num: Case, den: Case, attr: str) -> list[float]:
    """Per-round ratios of `num` to `den` throughput: the two ran next to each other, so their
    ratio is steadier on a noisy machine than the ratio of medians."""
    out = []
    for run in range(report.config.runs):
        t = [next((getattr(m, attr) for m in report.measurements
                   if m.case == c and m.run == run and m.ok and getattr(m, attr)), None)
             for c in (num, den)]  # fmt: skip
        if t[0] and t[1]:
            out.append(t[1] / t[0])
    return out


def _ratio_row(report: Report, name: str, num: Case, den: Case, attr: str,
               target: float | None) -> str:  # fmt: skip
    want = f"≥ {target:g}" if target else "-"
    a = _rate(report, num, attr, statistics.median)
    b = _rate(report, den, attr, statistics.median)
    if not a or not b:
        return f"| {name} | - | - | {want} | not measured |"
    r = a / b
    rounds = " ".join(f"{x:.2f}" for x in _paired(report, num, den, attr)) or "-"
    if target is None:
        verdict = "for reference"
    elif r >= target:
        verdict = f"met ({r / target:.2f}× the target)"
    else:
        verdict = f"**not met** ({r / target:.2f}× the target; needs {target / r:.2f}× faster)"
    return f"| {name} | {r:.2f} | {rounds} | {want} | {verdict} |"


def render(report: Report) -> str:
    cfg = report.config
    med, best = statistics.median, max
    lines = [
        f"Machine: {report.machine['nproc']} CPUs ({report.machine['cpu']}), "
        f"{report.machine['memory']} RAM, kernel {report.machine['kernel']}, Python "
        f"{report.machine['python']}, cryptography {report.machine['cryptography']}, "
        f"{report.machine['openssh']}, {report.machine['rsync']}; files on "
        f"{report.machine['filesystem']}.",
        "",
        f"Command: `{report.command}`" if report.command else "",
        "",
        f"File: {format_bytes(cfg.size)} of random data, the same file for every tool, kept in "
        "the page cache for all tools (read once before the runs; caches are not dropped); the "
        f"destination, on the same filesystem, is deleted (and `sync` run) between copies. "
        f"{cfg.runs} run(s) per tool, tools interleaved; per-tool time limit {cfg.timeout:g} s. "
        "GB/s = 10^9 bytes/s. *Wall* is command start to finish (Surge: agent start-up, handshake "
        "and close included; scp/rsync: ssh connection included); *data* is the data phase "
        "(Surge: the sender's session; raw: the sink's first to last datagram). Peak RSS is the "
        "receiving process's `ru_maxrss`, which Linux carries over from the spawning process "
        "across exec: an upper bound (the bench keeps its own peak small).",
        "",
        "| Tool | Cipher | UDP payload | GB/s data (median / best) | GB/s wall (median / best) "
        "| Retransmitted | Receiver peak RSS | Status |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for case in cases(cfg.tools):
        ms = [m for m in report.measurements if m.case == case]
        status = ", ".join(sorted({m.status for m in ms})) or "-"
        rexmit = [m.retransmitted for m in ms if m.retransmitted is not None]
        rss = [m.rss for m in ms if m.rss]
        lines.append(
            f"| {case.label} | {case.cipher} | {case.payload or '-'} "
            f"| {_fmt(_rate(report, case, 'data', med))} / {_fmt(_rate(report, case, 'data', best))} "
            f"| {_fmt(_rate(report, case, 'wall', med))} / {_fmt(_rate(report, case, 'wall', best))} "
            f"| {(f'{max(rexmit) / 2**20:.1f} MiB' if rexmit else '-')} "
            f"| {(f'{max(rss) / 1e6:.0f} MB' if rss else '-')} | {status} |"
        )
    lines += [
        "",
        "| Ratio | Value (ratio of medians) | Per round | Target | Verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for payload in PAYLOADS:
        for cipher, what in (("aes128gcm", "Surge default cipher / raw UDP + AES-128-GCM"),
                             ("none", "Surge `-c none` / raw UDP")):  # fmt: skip
            lines.append(_ratio_row(report, f"{what}, {payload}-byte payload (data phase)",
                                    Case("surge", cipher, payload), Case("raw", cipher, payload),
                                    "data", TARGET_VS_RAW))  # fmt: skip
    default = Case("surge", "aes128gcm", PAYLOADS[0])
    for tool, target in (("scp", TARGET_VS_SCP), ("rsync", None)):
        lines.append(_ratio_row(report, f"`surge cp` (default) / {Case(tool, '', None).label} (wall)",
                                default, Case(tool, "ssh default", None), "wall", target))  # fmt: skip
    rss = [m.rss for m in report.measurements if m.case == default and m.rss]
    if rss:
        peak = max(rss)
        ok = "met" if peak < TARGET_RSS else "**not met**"
        lines.append(f"| Receiving agent peak RSS, `surge cp` default, {format_bytes(cfg.size)} "
                     f"| {peak / 1e6:.0f} MB | - | < {TARGET_RSS / 1e6:.0f} MB | {ok} "
                     f"({peak / TARGET_RSS:.2f}× the limit) |")  # fmt: skip
    failures = [m for m in report.measurements if not m.ok]
    if report.notes or failures:
        lines.append("")
    lines += [f"- {n}" for n in report.notes]
    lines += [f"- {m.case.label} run {m.run + 1}: {m.status}: {m.detail}" for m in failures]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def write_section(path: str, body: str, heading: str = SECTION) -> None:
    """Put `heading` + `body` into the Markdown file at `path`, replacing that section (up to
    the next ``## `` heading) if present; create the file with a ``# Benchmarks`` title."""
    text = "# Benchmarks\n"
    if os.path.exists(path):
        with open(path) as fh:
            text = fh.read()
    block = f"{heading}\n\n{body.rstrip()}\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        nxt = text.find("\n## ", start + len(heading))
        rest = text[nxt + 1 :] if nxt >= 0 else ""
        text = text[:start] + block + ("\n" + rest if rest else "")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


def to_json(report: Report) -> dict[str, Any]:
    return {"config": asdict(report.config), "machine": report.machine, "command": report.command,
            "notes": report.notes, "measurements": [asdict(m) for m in report.measurements]}  # fmt: skip


def from_json(data: dict[str, Any]) -> Report:
    """The report `to_json` wrote, to render it again."""
    cfg = BenchConfig(**{**data["config"], "tools": tuple(data["config"]["tools"])})
    report = Report(cfg, data["machine"], data["command"], notes=list(data["notes"]))
    for m in data["measurements"]:
        report.measurements.append(Measurement(**{**m, "case": Case(**m["case"])}))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.loopback", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--size", default="2G", help="file size, e.g. 2G, 512M (default 2G)")
    ap.add_argument("--runs", type=int, default=1, help="rounds over all tools (default 1)")
    ap.add_argument("--workdir", default=tempfile.gettempdir(), help="where the files go")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per tool run")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {','.join(TOOLS)}")
    ap.add_argument("--rate", default="20g", help="surge cp -l (default 20g)")
    ap.add_argument("--no-verify", action="store_true", help="skip comparing each copy")
    ap.add_argument("--remove-source", action="store_true", help="delete the source file after")
    ap.add_argument(
        "--out",
        action="append",
        default=[],
        help="a .md file (its section replaced) or a .json file; may be repeated",
    )
    ap.add_argument("--from-json", help="render a JSON written by --out again; run nothing")
    a = ap.parse_args(argv)
    try:
        size = parse_size(a.size, "--size", minimum=1)
    except UnitError as exc:
        ap.error(str(exc))
    cfg = BenchConfig(size, a.runs, a.workdir, a.timeout, tuple(t for t in a.tools.split(",") if t),
                      a.rate, not a.no_verify, not a.remove_source)  # fmt: skip
    command = "python -m bench.loopback " + shlex.join(argv if argv is not None else sys.argv[1:])
    if a.from_json:
        with open(a.from_json) as fh:
            report = from_json(json.load(fh))
    else:
        report = run_bench(cfg, command=command.strip())
    text = render(report)
    print()
    print(SECTION)
    print()
    print(text)
    for out in a.out:
        if out.endswith(".json"):
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, "w") as fh:
                json.dump(to_json(report), fh, indent=1)
        else:
            write_section(out, text)
    return 0 if all(m.ok for m in report.measurements) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Remote benchmark (issue 3): remote `surge cp` uploads over loopback vs scp and rsync.

One run uploads the same file (random data, kept in the page cache; made once and reused) with:

* ``surge cp`` to a private system sshd on 127.0.0.1 that runs ``surge agent`` as the forced
  command of the client's key (as ascp runs on an Aspera server);
* ``surge cp`` to ``surge server`` (its own SSH server, one agent per session);
* ``scp`` and ``rsync -e ssh`` through the same sshd (another key, no forced command).

Each copy's destination is compared with the source and deleted (and ``sync`` run) before the
next. It prints one table (GB/s = 10^9 bytes/s; wall = command start to end, SSH connection
included) and the ratios, and can write it as a section of ``docs/BENCHMARKS.md``.

Usage: ``python -m bench.remote [--size 2G] [--runs 1] [--rate 20g] [--out docs/BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.shared import GB, drop, machine_info, prepare_source, same_content, write_section
from bench.sshtools import (
    LocalSshd,
    SshUnavailable,
    add_agent_key,
    free_tcp_port,
    free_udp_port,
    keygen,
)
from common.units import UnitError, format_bytes, parse_size

__all__ = ["SECTION", "TOOLS", "RemoteBenchConfig", "Result", "main", "render", "run_bench"]

SECTION = "## Remote surge cp over loopback vs scp/rsync (issue 3)"
TOOLS = ("surge-sshd", "surge-server", "scp", "rsync")
LABELS = {
    "surge-sshd": "surge cp → sshd, `surge agent` as forced command",
    "surge-server": "surge cp → surge server",
    "scp": "scp → sshd",
    "rsync": "rsync -e ssh → sshd",
}
_SUMMARY = re.compile(
    r" in (\d+(?:\.\d+)?) s \("
)  # surge cp's summary: "... 2.00 GiB in 1.23 s (...)"


@dataclass(frozen=True)
class RemoteBenchConfig:
    size: int = 2 << 30
    runs: int = 1
    workdir: str = field(default_factory=tempfile.gettempdir)
    timeout: float = 300.0  # per copy
    rate: str = "20g"  # surge cp -l
    cipher: str = "aes128"  # surge cp -c (the default: AES-128, GCM where the server allows)
    verify: bool = True
    keep_source: bool = True

    def __post_init__(self) -> None:
        if self.size <= 0 or self.runs <= 0 or self.timeout <= 0:
            raise ValueError("size, runs and timeout must be positive")


@dataclass
class Result:
    tool: str
    run: int
    status: str  # ok | failed | timeout | corrupt | unavailable
    wall: float | None = None
    data: float | None = None  # surge: the data phase its summary reports
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Report:
    config: RemoteBenchConfig
    machine: dict[str, str]
    command: str
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- the far ends ------------------------------------------------------------------------------


@dataclass
class ServerEnd:
    port: int
    key: str
    docroot: str


@contextmanager
def surge_server(directory: str, docroot: str) -> Iterator[ServerEnd]:
    """`surge server` on free ports of 127.0.0.1, confined to `docroot`; stopped with SIGTERM."""
    host_key = keygen(os.path.join(directory, "server_host_key"))
    key = keygen(os.path.join(directory, "server_client_key"))
    shutil.copy(key + ".pub", os.path.join(directory, "server_authorized_keys"))
    port = free_tcp_port()
    udp = free_udp_port()  # a session takes the first free port of udp..udp+3
    argv = [sys.executable, "-m", "coordinator.cli", "server", "--listen", "127.0.0.1", "--ssh-port", str(port),
            "--udp-port", f"{udp}-{udp + 3}", "--host-key", host_key,
            "--authorized-keys", os.path.join(directory, "server_authorized_keys"), "--docroot", docroot]  # fmt: skip
    log_path = os.path.join(directory, "server.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                with open(log_path, errors="replace") as fh:
                    raise SshUnavailable(
                        f"surge server exited with {proc.returncode}: {fh.read()[-300:]}"
                    )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SshUnavailable("surge server did not listen within 20 s") from None
                time.sleep(0.05)
        yield ServerEnd(port, key, docroot)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- one copy --------------------------------------------------------------------------------


def _run(tool: str, run: int, cmd: list[str], timeout: float) -> Result:
    res = Result(tool, run, "failed", detail=shlex.join(cmd))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        res.status = "timeout"
        return res
    res.wall = time.monotonic() - started
    if proc.returncode != 0:
        res.detail += f" | exit {proc.returncode}: {err.strip()[-300:]}"
        return res
    m = _SUMMARY.search(err)
    res.data = float(m.group(1)) if m and tool.startswith("surge") else None
    res.status = "ok"
    return res


def surge_command(cfg: RemoteBenchConfig, port: int, key: str, src: str, remote: str) -> list[str]:
    return [sys.executable, "-m", "coordinator.cli", "cp", "-l", cfg.rate, "-c", cfg.cipher, "-P", str(port),
            "-i", key, "-O", str(free_udp_port()), src, remote]  # fmt: skip


# -- the run ---------------------------------------------------------------------------------


def run_bench(
    cfg: RemoteBenchConfig, *, command: str = "", log: Callable[[str], None] = print
) -> Report:
    home = os.path.join(cfg.workdir, "surge-bench-loopback")  # shares bench.loopback's source file
    os.makedirs(home, exist_ok=True)
    need = cfg.size * (1 if os.path.exists(os.path.join(home, f"source-{cfg.size}.bin")) else 2)
    free = shutil.disk_usage(home).free
    if free < need + (256 << 20):
        raise SystemExit(
            f"not enough space in {home}: {free / GB:.1f} GB free, need {need / GB:.1f} GB"
        )
    report = Report(cfg, machine_info(home), command)
    src = prepare_source(home, cfg.size)
    dst_dir = tempfile.mkdtemp(prefix="dst-remote-", dir=home)  # same filesystem as the source
    dst = os.path.join(dst_dir, "copy.bin")
    keys_dir = tempfile.mkdtemp(prefix="surge-bench-remote-")
    report.notes.append(
        "load average (1/5/15 min) before: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    try:
        with LocalSshd.start() as sshd, surge_server(keys_dir, dst_dir) as server:
            agent_key = add_agent_key(sshd)
            report.notes.append(
                f"ssh cipher negotiated by scp/rsync: {sshd.cipher}; scp protocol: {sshd.scp_mode}"
            )
            commands = {
                "surge-sshd": surge_command(
                    cfg, sshd.port, agent_key, src, f"{sshd.user}@127.0.0.1:{dst}"
                ),
                "surge-server": surge_command(
                    cfg, server.port, server.key, src, "bench@127.0.0.1:/copy.bin"
                ),
                "scp": sshd.scp_command(src, dst),
                "rsync": sshd.rsync_command(src, dst),
            }
            for run in range(cfg.runs):
                for tool in TOOLS:
                    drop(dst)
                    res = _run(tool, run, commands[tool], cfg.timeout)
                    if res.ok and cfg.verify and not (os.path.exists(dst) and os.path.getsize(dst) == cfg.size
                                                      and same_content(src, dst)):  # fmt: skip
                        res.status = "corrupt"
                    report.results.append(res)
                    log(
                        f"run {run + 1}/{cfg.runs} {LABELS[tool]:52} {res.status:8} "
                        f"wall {_gbps(cfg.size, res.wall)} data {_gbps(cfg.size, res.data)} GB/s"
                    )
                    drop(dst)
    except SshUnavailable as exc:
        report.notes.append(f"not measured: {exc}")
    finally:
        report.notes.append(
            "load average (1/5/15 min) after: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
        shutil.rmtree(dst_dir, ignore_errors=True)
        shutil.rmtree(keys_dir, ignore_errors=True)
        if not cfg.keep_source:
            os.unlink(src)
    return report


# -- rendering -------------------------------------------------------------------------------


def _gbps(size: int, seconds: float | None) -> str:
    return f"{size / seconds / GB:.3f}" if seconds else "-"


def _median_rate(report: Report, tool: str, attr: str) -> float | None:
    rates = [report.config.size / getattr(r, attr) for r in report.results
             if r.tool == tool and r.ok and getattr(r, attr)]  # fmt: skip
    return statistics.median(rates) if rates else None


def render(report: Report) -> str:
    cfg, mi = report.config, report.machine
    lines = [
        f"Machine: {mi['nproc']} CPUs ({mi['cpu']}), {mi['memory']} RAM, kernel {mi['kernel']}, Python "
        f"{mi['python']}, cryptography {mi['cryptography']}, {mi['openssh']}, {mi['rsync']}; files on "
        f"{mi['filesystem']}.",
        "",
        f"Command: `{report.command}`" if report.command else "",
        "",
        f"Upload of one {format_bytes(cfg.size)} file of random data over 127.0.0.1, the same file for "
        "every tool, kept in the page cache (caches are not dropped); the destination, on the same "
        "filesystem, is compared with the source, then deleted (and `sync` run) between copies. "
        f"Surge: `surge cp -l {cfg.rate} -c {cfg.cipher}` (AES-128-GCM negotiated), loopback's 64 KiB "
        "datagrams, through the system sshd running `surge agent` as the key's forced command, and "
        "through `surge server`; scp and rsync go through the same sshd with another key. "
        f"{cfg.runs} run(s) per tool, tools interleaved. GB/s = 10^9 bytes/s. *Wall* is command start "
        "to end (Python start-up, SSH connection and authentication, agent start-up, close); *data* "
        "is Surge's data phase as its summary reports it.",
        "",
        "| Tool | GB/s wall (median) | GB/s data (median) | Status |",
        "|---|---:|---:|---|",
    ]
    for tool in TOOLS:
        rs = [r for r in report.results if r.tool == tool]
        status = ", ".join(sorted({r.status for r in rs})) or "not run"
        wall, data = _median_rate(report, tool, "wall"), _median_rate(report, tool, "data")
        lines.append(f"| {LABELS[tool]} | {wall / GB if wall else 0:.3f} | "
                     f"{f'{data / GB:.3f}' if data else '-'} | {status} |")  # fmt: skip
    lines += ["", "| Ratio (wall) | Value |", "|---|---:|"]
    for num, den in (("surge-sshd", "scp"), ("surge-sshd", "rsync"), ("surge-server", "scp"),
                     ("surge-server", "rsync"), ("surge-server", "surge-sshd")):  # fmt: skip
        a, b = _median_rate(report, num, "wall"), _median_rate(report, den, "wall")
        lines.append(
            f"| {LABELS[num]} / {LABELS[den]} | {f'{a / b:.2f}×' if a and b else 'not measured'} |"
        )
    failures = [r for r in report.results if not r.ok]
    lines.append("")
    lines += [f"- {n}" for n in report.notes]
    lines += [f"- {LABELS[r.tool]} run {r.run + 1}: {r.status}: {r.detail}" for r in failures]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.remote", description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="2G", help="file size, e.g. 2G, 512M (default 2G)")
    ap.add_argument("--runs", type=int, default=1, help="rounds over all tools (default 1)")
    ap.add_argument("--workdir", default=tempfile.gettempdir(), help="where the files go")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per copy")
    ap.add_argument("--rate", default="20g", help="surge cp -l (default 20g)")
    ap.add_argument("--no-verify", action="store_true", help="skip comparing each copy")
    ap.add_argument("--remove-source", action="store_true", help="delete the source file after")
    ap.add_argument(
        "--out", action="append", default=[], help="a .md file whose section is replaced"
    )
    a = ap.parse_args(argv)
    try:
        size = parse_size(a.size, "--size", minimum=1)
    except UnitError as exc:
        ap.error(str(exc))
    cfg = RemoteBenchConfig(size, a.runs, a.workdir, a.timeout, a.rate, verify=not a.no_verify,
                            keep_source=not a.remove_source)  # fmt: skip
    command = "python -m bench.remote " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = run_bench(cfg, command=command.strip())
    text = render(report)
    print()
    print(SECTION)
    print()
    print(text)
    for out in a.out:
        write_section(out, text, SECTION)
    return 0 if report.results and all(r.ok for r in report.results) else 1


if __name__ == "__main__":
    sys.exit(main())

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
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.loopback_report import (
    PAYLOADS,
    SECTION,
    TOOLS,
    BenchConfig,
    Case,
    Measurement,
    Report,
    cases,
    from_json,
    gbps,
    render,
    to_json,
    write_section,
)
from bench.rawudp import RawConfig, RawError, run_raw
from bench.shared import GB, drop, machine_info, own_rss, prepare_source, same_content
from bench.sshtools import LocalSshd, SshUnavailable
from common.units import UnitError, parse_size

__all__ = ["SECTION", "BenchConfig", "Case", "Measurement", "Report", "cases", "from_json", "main",
           "render", "run_bench", "to_json", "write_section"]  # fmt: skip


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
    report.notes.append(f"bench process peak RSS before the copies: {own_rss() / 1e6:.0f} MB")
    dst_dir = tempfile.mkdtemp(prefix="dst-", dir=home)  # same filesystem as the source
    dst = os.path.join(dst_dir, "copy.bin")
    try:
        with _maybe_sshd(cfg, report) as sshd:
            for run in range(cfg.runs):
                for case in cases(cfg.tools):
                    drop(dst)
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
                        f"{gbps(cfg.size, m.data) or '':>6} {gbps(cfg.size, m.wall) or '':>6} {m.detail}")  # fmt: skip
                    drop(dst)
    finally:
        shutil.rmtree(dst_dir, ignore_errors=True)
        if not cfg.keep_source:
            shutil.rmtree(home, ignore_errors=True)
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

"""WAN benchmark (issue 6): `surge cp` against rsync, scp and TCP on an emulated link.

For every (RTT, loss) cell at 100 Mbit/s it builds a :class:`bench.wan.WanLink` (drop-tail queue of
one bandwidth-delay product each way) and copies the same file (random data, made once) from
namespace a to namespace b with:

* ``surge cp -l 1g`` (default ``fair`` policy: the rate is found, not configured), its far end
  (``workers.agent``) started in namespace b over a pipe;
* ``rsync -e ssh`` and ``scp`` through an sshd that the bench starts in namespace b (temporary
  keys, root login by key), TCP congestion control of the sending side set per route;
* ``iperf3`` TCP with cubic and with bbr for a fixed time, as the TCP ceiling.

Each run is capped (``--timeout``): a capped run reports what it delivered so far over the time
it ran. It prints a table, saves JSON and draws goodput against RTT (one panel per loss rate).

    python -m bench.wan_bench [--rtts 10,50,100,200] [--losses 0,0.001,0.01,0.03]
        [--surge-extra-loss 0.05] [--size 200M] [--timeout 60] [--tools surge,rsync,scp,
        iperf3-cubic,iperf3-bbr] [--out results.json] [--png docs/wan-goodput.png]

Needs root (namespaces, TUN); installs openssh-server, rsync and iperf3 with apt-get if missing.
:class:`SurgeFlow` (one `surge cp` run from namespace a, observed live) is shared with
``bench.wan_fairness`` and ``tests/test_wan_transfer.py``; it lives in :mod:`bench.wan_flow`, the
TCP tools in :mod:`bench.wan_tcp`, the results and their rendering in :mod:`bench.wan_report`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, REPO_ROOT)

from bench.shared import first_line, machine_info, prepare_source, same_content, write_section  # noqa: E402
from bench.sshtools import SshUnavailable, ensure_ssh_tools  # noqa: E402
from bench.wan import LinkSpec, WanLink  # noqa: E402
from bench.wan_flow import SurgeFlow  # noqa: E402
from bench.wan_report import (  # noqa: E402
    LABELS,
    MBIT,
    SECTION,
    TOOLS,
    BenchConfig,
    Report,
    Run,
    fmt,
    from_json,
    render,
    to_json,
)
from bench.wan_tcp import NsSshd, ensure_iperf3, run_iperf, run_ssh_tool, wait_listening  # noqa: E402
from common.units import UnitError, parse_size  # noqa: E402

__all__ = ["SECTION", "TOOLS", "BenchConfig", "Report", "Run", "from_json", "main", "render",
           "run_bench", "to_json", "udp_receive_errors"]  # fmt: skip


def _steal_ms() -> float:
    with open("/proc/stat") as fh:
        fields = fh.readline().split()
    return int(fields[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")


@contextmanager
def _observe(link: WanLink, run: Run) -> Iterator[None]:
    """Fill `run.link` with what the emulator counted A->B meanwhile and the host's steal."""
    keys = ("packets_in", "packets_dropped_loss", "packets_dropped_queue")
    before, steal, rcvbuf = link.statistics()["a_to_b"], _steal_ms(), udp_receive_errors(link, "b")
    try:
        yield
    finally:
        stats = link.statistics()
        after = stats["a_to_b"]
        run.link = {k: after[k] - before[k] for k in keys}
        run.link["queue_peak_bytes"] = after["queue_peak_bytes"]
        run.link["release_late_max_us"] = after["release_late_max_us"]
        run.link["host_steal_ms"] = round(_steal_ms() - steal)
        run.link["load1"] = os.getloadavg()[0]  # other work on the machine (it is shared)
        # UDP datagrams the kernel of side b dropped because the receiving socket was full: a
        # receiver that fell behind (Surge's agent), not the emulated link.
        run.link["udp_rcvbuf_errors_b"] = udp_receive_errors(link, "b") - rcvbuf


def udp_receive_errors(link: WanLink, side: str) -> int:
    """``Udp: RcvbufErrors`` of `side`'s namespace (/proc/net/snmp), or 0 if unreadable."""
    p = link.run(side, ["cat", "/proc/net/snmp"], capture_output=True, text=True)  # type: ignore[arg-type]
    rows = [line.split() for line in p.stdout.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2 or "RcvbufErrors" not in rows[0]:
        return 0
    return int(rows[1][rows[0].index("RcvbufErrors")])


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run_surge(link: WanLink, cfg: BenchConfig, src: str, dst: str, run: Run) -> None:
    argv = ["-l", cfg.surge_rate, "-O", "33001", src, dst]
    flow = SurgeFlow(link, argv).start()
    run.detail = "surge cp " + shlex.join(argv)
    try:
        finished = flow.wait(cfg.timeout)
    finally:
        flow.stop()
    samples = flow.samples
    run.queue_delay_ms = _ms(
        _median([s["rate_queue_delay"] for s in samples if s.get("rate_queue_delay") is not None])
    )
    srtts = [s["srtt"] for s in samples if s.get("srtt")]
    run.rtt_excess_ms = _ms(_median(srtts)) - run.rtt_ms if srtts else None  # type: ignore[operator]
    final = flow.final
    if finished and final and final.get("ok"):
        sender = final["sender"]
        run.bytes_delivered = int(sender["bytes_total"])
        run.seconds = float(sender["elapsed"])
        run.goodput_mbps = run.bytes_delivered * 8 / run.seconds / MBIT
        run.wall_goodput_mbps = run.bytes_delivered * 8 / float(final["elapsed"]) / MBIT
        run.redundant_pct = 100.0 * (int(sender["bytes_sent"]) / run.bytes_delivered - 1)
        cpu = final.get("cpu", {})
        if cpu:  # CPU seconds per second of wall time: the sending process, the receiving agent
            run.cpu = {k: round(v / float(final["elapsed"]), 3) for k, v in cpu.items()}
        run.status = "ok" if same_content(src, dst) else "corrupt"
        return
    if finished:
        run.status, run.detail = "failed", f"{run.detail} | {flow.errors}"
        return
    run.status = "capped"  # what it delivered so far, over the data phase so far
    last = next((s for s in reversed(samples) if s.get("bytes_acked") is not None), None)
    if last and last["elapsed"]:
        run.bytes_delivered = int(last["bytes_acked"])
        run.seconds = float(last["elapsed"])
        run.goodput_mbps = run.bytes_delivered * 8 / run.seconds / MBIT
        run.redundant_pct = 100.0 * (int(last["bytes_sent"]) / max(run.bytes_delivered, 1) - 1)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


# -- the matrix ---------------------------------------------------------------------------------


def _cells(cfg: BenchConfig) -> list[tuple[float, float, tuple[str, ...]]]:
    out = []
    for rtt in cfg.rtts:
        for loss in cfg.losses:
            tools = tuple(t for t in cfg.tools
                          if not (t in ("rsync", "scp") and (rtt, loss) in cfg.ssh_skip))  # fmt: skip
            out.append((rtt, loss, tools))
        for loss in cfg.surge_extra_losses:
            if loss not in cfg.losses and "surge" in cfg.tools:
                out.append((rtt, loss, ("surge",)))
    return out


def run_bench(cfg: BenchConfig, *, command: str = "", log: Callable[[str], None] = print,
              prefix: str = "wanbench") -> Report:  # fmt: skip
    home = os.path.join(cfg.workdir, "surge-wan-bench")
    os.makedirs(home, exist_ok=True)
    report = Report(cfg, machine_info(home), command)
    report.machine["commit"] = _source_state()
    src = prepare_source(home, cfg.size)
    dst_dir = tempfile.mkdtemp(prefix="dst-", dir=home)
    dst = os.path.join(dst_dir, "copy.bin")
    key_dir = tempfile.mkdtemp(prefix="keys-", dir=home)
    try:
        sshd = _ssh_peer(cfg, key_dir, report)
        if any(t.startswith("iperf3") for t in cfg.tools):
            ensure_iperf3()
            report.machine["iperf3"] = first_line(["iperf3", "--version"])  # once it is installed
        for rtt, loss, tools in _cells(cfg):
            spec = LinkSpec(rate_bps=cfg.rate_bps, rtt_ms=rtt, loss=loss, seed=cfg.seed)
            with WanLink(spec, prefix=prefix) as link:
                peer = _start_peers(link, tools, sshd, report, f"{rtt:g} ms / {loss:.1%}")
                for tool in tools:
                    _clear(dst_dir)
                    run = Run(tool, rtt, loss, "failed")
                    with _observe(link, run):
                        _run_tool(link, cfg, peer, src, dst, run)
                    report.runs.append(run)
                    log(_log_line(run))
                    _clear(dst_dir)
            if sshd is not None and sshd.cipher != "unknown":
                note = f"ssh cipher negotiated: {sshd.cipher}; scp protocol: SFTP (OpenSSH >= 9 default)"
                if note not in report.notes:
                    report.notes.append(note)
    finally:
        shutil.rmtree(dst_dir, ignore_errors=True)
        shutil.rmtree(key_dir, ignore_errors=True)
    return report


def _ssh_peer(cfg: BenchConfig, key_dir: str, report: Report) -> NsSshd | None:
    """The sshd keys and config for rsync/scp, if they are to run and the tools are there."""
    if not {"rsync", "scp"} & set(cfg.tools):
        return None
    try:
        ensure_ssh_tools()
        return NsSshd(key_dir)
    except Exception as exc:
        report.notes.append(f"rsync/scp not measured: {exc}")
        return None


def _start_peers(link: WanLink, tools: tuple[str, ...], sshd: NsSshd | None, report: Report,
                 cell: str) -> NsSshd | None:  # fmt: skip
    """Start in namespace b what the cell's TCP tools need: sshd (returned; None if it is not
    there) and the iperf3 server."""
    peer = None
    if sshd is not None and {"rsync", "scp"} & set(tools):
        try:
            sshd.start(link)
            peer = sshd
        except (RuntimeError, SshUnavailable) as exc:
            report.notes.append(f"{cell}: {exc}")
    if {"iperf3-cubic", "iperf3-bbr"} & set(tools):
        link.popen("b", ["iperf3", "-s", "-B", link.addr_b], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
        wait_listening(link, "b", 5201)
    return peer


def _run_tool(link: WanLink, cfg: BenchConfig, sshd: NsSshd | None, src: str, dst: str,
              run: Run) -> None:  # fmt: skip
    if run.tool == "surge":
        run_surge(link, cfg, src, dst, run)
    elif run.tool in ("rsync", "scp"):
        if sshd is None:
            run.status = "unavailable"
        else:
            run_ssh_tool(link, cfg, sshd, run.tool, src, dst, run)
    else:
        run_iperf(link, cfg, run.tool.split("-", 1)[1], run)


def _source_state() -> str:
    """The commit, and whether the transport's files differ from it (others edit them too)."""
    head = first_line(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", REPO_ROOT, "status", "--porcelain", "--", "common/transport", "workers",
                         "coordinator/cp"])  # fmt: skip
    return head + (
        " (transport/agent files modified in the work tree)" if dirty not in ("", "n/a") else ""
    )


def _clear(directory: str) -> None:
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.sync()


def _log_line(r: Run) -> str:
    extra = ""
    if r.tool == "surge":
        extra = (
            f" redundant {fmt(r.redundant_pct, '.2f')}% qdelay {fmt(r.queue_delay_ms, '.1f')} ms"
        )
    return (f"{r.rtt_ms:>5g} ms {r.loss:>6.1%} {LABELS[r.tool]:13} {r.status:8} "
            f"{fmt(r.goodput_mbps, '.2f'):>7} Mbit/s{extra} link {r.link} {r.detail}")  # fmt: skip


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"{name}: expected a comma list of numbers, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench.wan_bench", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--rtts", default="10,50,100,200", help="round-trip times, ms")
    ap.add_argument("--losses", default="0,0.001,0.01,0.03", help="random loss rates (fractions)")
    ap.add_argument("--surge-extra-loss", default="0.05", help="loss rates run for Surge only")
    ap.add_argument("--size", default="200M", help="file size (default 200M = 200 MiB)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per run (default 60)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {','.join(TOOLS)}")
    ap.add_argument("--rate", default="100e6", help="link rate, bit/s (default 100e6)")
    ap.add_argument("--surge-rate", default="1g", help="surge cp -l (default 1g, above the link)")
    ap.add_argument("--iperf-time", type=float, default=20.0, help="seconds per iperf3 run")
    ap.add_argument(
        "--ssh-cc", default="bbr", help="TCP congestion control for rsync/scp (default bbr)"
    )
    ap.add_argument(
        "--ssh-skip", default="", help="cells without rsync/scp, e.g. 200:0.001,200:0.03"
    )
    ap.add_argument("--workdir", default=tempfile.gettempdir(), help="where the file goes")
    ap.add_argument(
        "--out", default="wan-results.json", help="JSON results (default wan-results.json)"
    )
    ap.add_argument(
        "--png", default=os.path.join(REPO_ROOT, "docs", "wan-goodput.png"), help="plot (PNG)"
    )
    ap.add_argument(
        "--repeat-json",
        action="append",
        default=[],
        metavar="LABEL=FILE",
        help="add the Surge runs of another run's JSON to the plot as a dashed line",
    )
    ap.add_argument("--md", help="also write the section into this Markdown file")
    ap.add_argument(
        "--from-json", help="render and plot a JSON written by --out again; run nothing"
    )
    return ap


def _config(a: argparse.Namespace, ap: argparse.ArgumentParser) -> BenchConfig:
    try:
        size = parse_size(a.size, "--size", minimum=1)
    except UnitError as exc:
        ap.error(str(exc))
    skip = tuple(tuple(float(v) for v in c.split(":")) for c in a.ssh_skip.split(",") if c)
    return BenchConfig(rtts=_floats(a.rtts, "--rtts"), losses=_floats(a.losses, "--losses"),
                       surge_extra_losses=_floats(a.surge_extra_loss, "--surge-extra-loss"), size=size,
                       timeout=a.timeout, tools=tuple(t for t in a.tools.split(",") if t),
                       rate_bps=float(a.rate), surge_rate=a.surge_rate, iperf_seconds=a.iperf_time,
                       ssh_cc=a.ssh_cc, ssh_skip=skip, workdir=a.workdir)  # type: ignore[arg-type]  # fmt: skip


def _plot(report: Report, png: str, repeat_json: list[str]) -> None:
    from bench.plot import plot_goodput

    repeats = []
    for item in repeat_json:
        label, _, path = item.partition("=")
        with open(path) as fh:
            repeats.append((label, from_json(json.load(fh))))
    plot_goodput(report, png, repeats)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ap = _parser()
    a = ap.parse_args(args)
    if a.from_json:
        with open(a.from_json) as fh:
            report = from_json(json.load(fh))
    else:
        cfg = _config(a, ap)
        command = "python -m bench.wan_bench " + shlex.join(args)
        report = run_bench(cfg, command=command.strip())
        with open(a.out, "w") as fh:
            json.dump(to_json(report), fh, indent=1)
    text = render(report)
    print()
    print(SECTION)
    print()
    print(text)
    if a.png:
        _plot(report, a.png, a.repeat_json)
    if a.md:
        write_section(a.md, text, SECTION)
    return 0 if all(r.status in ("ok", "capped") for r in report.runs) else 1


if __name__ == "__main__":
    sys.exit(main())

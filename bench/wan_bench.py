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
``bench.wan_fairness`` and ``tests/test_wan_transfer.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import IO, Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, REPO_ROOT)

from bench.shared import machine_info, prepare_source, same_content  # noqa: E402
from bench.sshtools import ensure_ssh_tools  # noqa: E402
from bench.wan import LinkSpec, WanLink  # noqa: E402
from common.units import UnitError, parse_size  # noqa: E402

__all__ = ["SECTION", "TOOLS", "BenchConfig", "NsSshd", "Report", "Run", "SurgeFlow", "ensure_iperf3",
           "from_json", "main", "render", "run_bench", "surge_carry_mbps", "targets", "to_json",
           "udp_receive_errors"]  # fmt: skip

SECTION = "## WAN: surge cp vs rsync, scp and TCP on an emulated 100 Mbit/s link (issue 6)"
TOOLS = ("surge", "rsync", "scp", "iperf3-cubic", "iperf3-bbr")
LABELS = {"surge": "surge cp", "rsync": "rsync -e ssh", "scp": "scp",
          "iperf3-cubic": "iperf3 cubic", "iperf3-bbr": "iperf3 bbr"}  # fmt: skip
#: Per 1500-byte IP packet Surge carries 1500 - 20 (IP) - 8 (UDP) - 36 (data header) - 16 (AEAD
#: tag) = 1420 file bytes.
SURGE_OVERHEAD = 20 + 8 + 36 + 16
MTU = 1500
MBIT = 1e6
#: How long iperf3 waits for its server to listen, and the grace after a run's time limit.
IPERF_READY_S = 5.0
SSHD_READY_S = 15.0


def surge_carry_mbps(rate_bps: float, mtu: int = MTU) -> float:
    """File bytes the link can carry for Surge after IP, UDP and Surge headers, in Mbit/s."""
    return rate_bps * (mtu - SURGE_OVERHEAD) / mtu / MBIT


# -- one surge cp run from namespace a ------------------------------------------------------------

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
        self._proc = self.link.popen("a", [sys.executable, "-m", "bench.wan_bench", "_surge-driver", json.dumps(spec)],
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


# -- sshd and iperf3 in namespace b -------------------------------------------------------------


def ensure_iperf3() -> None:
    if shutil.which("iperf3"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "iperf3"]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {p.stderr.strip()[-300:]}")


class NsSshd:
    """Keys and config made once (temporary host and client keys, root login by key only); an
    `sshd -D` started per link in namespace b on port 22 of its address."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "surge-wan-bench",
                            "-f", os.path.join(directory, name)], check=True)  # fmt: skip
        shutil.copy(
            os.path.join(directory, "client_key.pub"), os.path.join(directory, "authorized_keys")
        )
        self.ssh = ["ssh", "-F", "/dev/null", "-i", os.path.join(directory, "client_key"), "-o", "IdentitiesOnly=yes",
                    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR"]  # fmt: skip
        self.cipher = "unknown"

    def start(self, link: WanLink) -> None:
        """Start sshd in namespace b of `link` (stopped with the link); wait until it takes the key."""
        config = os.path.join(self.directory, "sshd_config")
        with open(config, "w") as fh:
            fh.write("\n".join([
                "Port 22", f"ListenAddress {link.addr_b}", f"HostKey {self.directory}/host_key",
                f"PidFile {self.directory}/sshd.pid", f"AuthorizedKeysFile {self.directory}/authorized_keys",
                "PermitRootLogin prohibit-password", "PubkeyAuthentication yes", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no",
                "Subsystem sftp internal-sftp", "",
            ]))  # fmt: skip
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        log = open(os.path.join(self.directory, "sshd.log"), "ab")  # noqa: SIM115 - owned by sshd
        proc = link.popen("b", ["/usr/sbin/sshd", "-D", "-e", "-f", config], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + SSHD_READY_S
        err = ""
        while time.monotonic() < deadline and proc.poll() is None:
            probe = [
                *(o.replace("LogLevel=ERROR", "LogLevel=DEBUG1") for o in self.ssh),
                f"root@{link.addr_b}",
                "true",
            ]
            p = link.run("a", probe, capture_output=True, text=True, timeout=SSHD_READY_S)
            if p.returncode == 0:
                for line in p.stderr.splitlines():
                    if "kex: client->server cipher:" in line:
                        self.cipher = line.split("cipher:", 1)[1].split()[0]
                return
            err = p.stderr.strip()[-300:]
            time.sleep(0.3)
        raise RuntimeError(f"sshd in {link.ns_b} did not accept the key: {err}")

    def command(self, tool: str, src: str, dst: str, host: str) -> list[str]:
        if tool == "scp":
            return ["scp", *self.ssh[1:], src, f"root@{host}:{dst}"]
        return ["rsync", "-e", shlex.join(self.ssh), src, f"root@{host}:{dst}"]


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    rtts: tuple[float, ...] = (10.0, 50.0, 100.0, 200.0)
    losses: tuple[float, ...] = (0.0, 0.001, 0.01, 0.03)
    surge_extra_losses: tuple[float, ...] = (0.05,)
    size: int = 200 * 2**20
    timeout: float = 60.0
    tools: tuple[str, ...] = TOOLS
    rate_bps: float = 100e6
    surge_rate: str = "1g"  # -l above the link: the rate is found, not configured
    iperf_seconds: float = 20.0
    ssh_cc: str = "bbr"  # the host's and every new namespace's default
    ssh_skip: tuple[tuple[float, float], ...] = ()  # (rtt, loss) cells without rsync/scp
    workdir: str = field(default_factory=tempfile.gettempdir)
    seed: int = 6

    def __post_init__(self) -> None:
        unknown = set(self.tools) - set(TOOLS)
        if unknown:
            raise ValueError(f"unknown tools {sorted(unknown)}; choose from {','.join(TOOLS)}")
        if self.size <= 0 or self.timeout <= 0 or self.iperf_seconds <= 0 or not self.rtts:
            raise ValueError("size, timeout, iperf time must be positive and --rtts not empty")


@dataclass
class Run:
    tool: str
    rtt_ms: float
    loss: float
    status: str  # ok | capped | failed | corrupt | unavailable
    bytes_delivered: int = 0
    seconds: float | None = None  # the time the goodput is over
    goodput_mbps: float | None = None  # file bytes (iperf3: TCP payload) per second
    wall_goodput_mbps: float | None = None  # Surge: over the whole command, agent start included
    redundant_pct: float | None = None  # Surge: payload sent / file bytes - 1
    queue_delay_ms: float | None = None  # Surge: median of the queueing delay the sender sees
    rtt_excess_ms: float | None = None  # Surge: median smoothed RTT above the configured RTT
    retransmits: int | None = None  # iperf3: TCP segments retransmitted
    link: dict[str, float] = field(default_factory=dict)  # emulator A->B counters of this run
    cpu: dict[str, float] = field(default_factory=dict)  # Surge: CPU s per wall s, sender and agent
    detail: str = ""

    @property
    def capped(self) -> bool:
        return self.status == "capped"


@dataclass
class Report:
    config: BenchConfig
    machine: dict[str, str]
    command: str
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


def _wait_listening(link: WanLink, side: str, port: int) -> None:
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
    report.machine["iperf3"] = _first_line(["iperf3", "--version"])
    report.machine["commit"] = _source_state()
    src = prepare_source(home, cfg.size)
    dst_dir = tempfile.mkdtemp(prefix="dst-", dir=home)
    dst = os.path.join(dst_dir, "copy.bin")
    key_dir = tempfile.mkdtemp(prefix="keys-", dir=home)
    want_ssh = bool({"rsync", "scp"} & set(cfg.tools))
    want_iperf = any(t.startswith("iperf3") for t in cfg.tools)
    sshd: NsSshd | None = None
    try:
        if want_ssh:
            try:
                ensure_ssh_tools()
                sshd = NsSshd(key_dir)
            except Exception as exc:
                report.notes.append(f"rsync/scp not measured: {exc}")
        if want_iperf:
            ensure_iperf3()
        for rtt, loss, tools in _cells(cfg):
            spec = LinkSpec(rate_bps=cfg.rate_bps, rtt_ms=rtt, loss=loss, seed=cfg.seed)
            with WanLink(spec, prefix=prefix) as link:
                ssh_ok = sshd is not None and {"rsync", "scp"} & set(tools)
                if ssh_ok:
                    assert sshd is not None
                    try:
                        sshd.start(link)
                    except RuntimeError as exc:
                        report.notes.append(f"{rtt:g} ms / {loss:.1%}: {exc}")
                        ssh_ok = False
                if want_iperf and set(tools) & {"iperf3-cubic", "iperf3-bbr"}:
                    link.popen("b", ["iperf3", "-s", "-B", link.addr_b], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
                    _wait_listening(link, "b", 5201)
                for tool in tools:
                    _clear(dst_dir)
                    run = Run(tool, rtt, loss, "failed")
                    with _observe(link, run):
                        if tool == "surge":
                            run_surge(link, cfg, src, dst, run)
                        elif tool in ("rsync", "scp"):
                            if ssh_ok:
                                assert sshd is not None
                                run_ssh_tool(link, cfg, sshd, tool, src, dst, run)
                            else:
                                run.status = "unavailable"
                        else:
                            run_iperf(link, cfg, tool.split("-", 1)[1], run)
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


def _source_state() -> str:
    """The commit, and whether the transport's files differ from it (others edit them too)."""
    head = _first_line(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", REPO_ROOT, "status", "--porcelain", "--", "common/transport", "workers",
                         "coordinator/cp"])  # fmt: skip
    return head + (
        " (transport/agent files modified in the work tree)" if dirty not in ("", "n/a") else ""
    )


def _clear(directory: str) -> None:
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.sync()


def _first_line(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    return ((p.stdout or p.stderr).strip().splitlines() or ["n/a"])[0]


def _log_line(r: Run) -> str:
    extra = ""
    if r.tool == "surge":
        extra = f" redundant {_f(r.redundant_pct, '.2f')}% qdelay {_f(r.queue_delay_ms, '.1f')} ms"
    return (f"{r.rtt_ms:>5g} ms {r.loss:>6.1%} {LABELS[r.tool]:13} {r.status:8} "
            f"{_f(r.goodput_mbps, '.2f'):>7} Mbit/s{extra} link {r.link} {r.detail}")  # fmt: skip


# -- rendering ----------------------------------------------------------------------------------


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _cell(runs: list[Run], tool: str, rtt: float, loss: float) -> Run | None:
    return next((r for r in runs if r.tool == tool and r.rtt_ms == rtt and r.loss == loss), None)


def _goodput(r: Run | None) -> str:
    if r is None:
        return "-"
    if r.goodput_mbps is None:
        return r.status
    text = f"{r.goodput_mbps:.1f}" if r.goodput_mbps >= 10 else f"{r.goodput_mbps:.2f}"
    return text + ("*" if r.capped else "") + (" corrupt" if r.status == "corrupt" else "")


def _surge_columns(r: Run | None) -> list[str]:
    if r is None:
        return ["-"] * 4
    return [_f(r.wall_goodput_mbps, ".1f"), _f(r.redundant_pct, ".2f") + " %",
            _f(r.queue_delay_ms, ".1f") + " ms", _f(r.rtt_excess_ms, ".1f") + " ms"]  # fmt: skip


def table(report: Report) -> str:
    cfg = report.config
    tools = [t for t in TOOLS if t in cfg.tools]
    head = ["RTT", "loss", *[LABELS[t] for t in tools]]
    if "surge" in tools:
        head[3:3] = [
            "surge wall",
            "surge redundant",
            "surge queue delay (median)",
            "surge RTT above base (median)",
        ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    losses = sorted({r.loss for r in report.runs})
    for rtt in cfg.rtts:
        for loss in losses:
            if not any(r.rtt_ms == rtt and r.loss == loss for r in report.runs):
                continue
            row = [f"{rtt:g} ms", f"{loss * 100:g} %"]
            for t in tools:
                r = _cell(report.runs, t, rtt, loss)
                row.append(_goodput(r))
                if t == "surge":
                    row += _surge_columns(r)
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets(report: Report) -> list[tuple[str, str, str, str]]:
    """(target, measured, wanted, verdict) for the issue's Surge targets on this report."""
    carry = surge_carry_mbps(report.config.rate_bps)
    rows: list[tuple[str, str, str, str]] = []

    def verdict(value: float, want: float, unit: str) -> str:
        if value >= want:
            return "met"
        if unit == "%":
            return f"**not met** (short by {(want - value) * 100:.1f} points, {(want - value) * carry:.1f} Mbit/s)"
        return f"**not met** (short by {want - value:.1f} {unit})"

    for rtt, loss, frac, absolute in (
        (100, 0.01, 0.95, 93.0),
        (200, 0.03, 0.90, None),
        (200, 0.05, 0.85, None),
    ):
        r = _cell(report.runs, "surge", rtt, loss)
        name = f"Surge goodput {rtt} ms / {loss * 100:g} %"
        if r is None or r.goodput_mbps is None:
            rows.append((name, "not measured", "", ""))
            continue
        got = r.goodput_mbps
        mark = " (capped)" if r.capped else ""
        if absolute is not None:
            rows.append((name + ", absolute", f"{got:.1f} Mbit/s{mark}", f">= {absolute:g} Mbit/s",
                         verdict(got, absolute, "Mbit/s")))  # fmt: skip
        rows.append((name + ", share of what the link carries after Surge's headers",
                     f"{got / carry:.1%} of {carry:.2f}{mark}", f">= {frac:.0%}", verdict(got / carry, frac, "%")))  # fmt: skip
    surge = [r for r in report.runs if r.tool == "surge" and r.redundant_pct is not None]
    if surge:
        worst = max(surge, key=lambda r: r.redundant_pct - 100 * r.loss)  # type: ignore[operator]
        over = [r for r in surge if r.redundant_pct > 100 * r.loss + 1.0]  # type: ignore[operator]
        rows.append(("Redundant <= loss + 1 % (every Surge cell)",
                     f"worst {worst.redundant_pct:.2f} % at {worst.rtt_ms:g} ms / {worst.loss * 100:g} %",
                     "<= loss + 1 %",
                     "met" if not over else f"**not met** in {len(over)} of {len(surge)} cells"))  # fmt: skip
    qd = [r for r in report.runs if r.tool == "surge" and r.queue_delay_ms is not None]
    if qd:
        worst = max(qd, key=lambda r: r.queue_delay_ms)  # type: ignore[arg-type,return-value]
        over = [r for r in qd if r.queue_delay_ms > 20.0]  # type: ignore[operator]
        rows.append(("Added queueing delay, median (every Surge cell)",
                     f"worst {worst.queue_delay_ms:.1f} ms at {worst.rtt_ms:g} ms / {worst.loss * 100:g} %",
                     "<= 20 ms", "met" if not over else f"**not met** in {len(over)} of {len(qd)} cells"))  # fmt: skip
    return rows


def render(report: Report) -> str:
    cfg, m = report.config, report.machine
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, kernel {m['kernel']}, Python "
        f"{m['python']}, cryptography {m['cryptography']}, {m['openssh']}, {m['rsync']}, {m.get('iperf3', '')}; "
        f"Surge at commit {m.get('commit', '?')}.",
        "",
        f"Command: `{report.command}`" if report.command else "",
        "",
        f"Link: {cfg.rate_bps / MBIT:g} Mbit/s each way, drop-tail queue of one BDP, random loss each way "
        f"(`bench.wan`, TUN emulator). File: {cfg.size / 2**20:g} MiB of random data, the same for every "
        f"tool. Goodput in Mbit/s (10^6 bit/s) of file bytes; `*` = capped at {cfg.timeout:g} s, "
        "goodput over what it delivered so far. Surge: `surge cp -l "
        f"{cfg.surge_rate}` (default `fair` policy), goodput over its data phase (sender session); "
        "*wall* over the whole command (agent start-up and handshake included). rsync/scp: "
        f"wall time, TCP {cfg.ssh_cc}. iperf3: {cfg.iperf_seconds:g} s runs, TCP payload per second at "
        f"the receiver. Surge carries at most {surge_carry_mbps(cfg.rate_bps):.2f} Mbit/s of file bytes "
        f"on this link ({MTU - SURGE_OVERHEAD} of every {MTU} bytes).",
        "",
        table(report),
        "",
        "| Target | Measured | Wanted | Verdict |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets(report)),
    ]
    bad = [r for r in report.runs if r.status in ("failed", "corrupt", "unavailable")]
    if report.notes or bad:
        lines.append("")
    lines += [f"- {n}" for n in report.notes]
    lines += [
        f"- {LABELS[r.tool]} {r.rtt_ms:g} ms / {r.loss * 100:g} %: {r.status}: {r.detail}"
        for r in bad
    ]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def to_json(report: Report) -> dict[str, Any]:
    return {"config": asdict(report.config), "machine": report.machine, "command": report.command,
            "notes": report.notes, "runs": [asdict(r) for r in report.runs]}  # fmt: skip


def from_json(data: dict[str, Any]) -> Report:
    c = dict(data["config"])
    for k in ("rtts", "losses", "surge_extra_losses", "tools"):
        c[k] = tuple(c[k])
    c["ssh_skip"] = tuple(tuple(x) for x in c["ssh_skip"])
    report = Report(BenchConfig(**c), data["machine"], data["command"], notes=list(data["notes"]))
    report.runs = [Run(**r) for r in data["runs"]]
    return report


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"{name}: expected a comma list of numbers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_surge-driver"]:
        return _driver(json.loads(args[1]))
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
    a = ap.parse_args(args)
    if a.from_json:
        with open(a.from_json) as fh:
            report = from_json(json.load(fh))
    else:
        try:
            size = parse_size(a.size, "--size", minimum=1)
        except UnitError as exc:
            ap.error(str(exc))
        skip = tuple(tuple(float(v) for v in c.split(":")) for c in a.ssh_skip.split(",") if c)
        cfg = BenchConfig(rtts=_floats(a.rtts, "--rtts"), losses=_floats(a.losses, "--losses"),
                          surge_extra_losses=_floats(a.surge_extra_loss, "--surge-extra-loss"), size=size,
                          timeout=a.timeout, tools=tuple(t for t in a.tools.split(",") if t),
                          rate_bps=float(a.rate), surge_rate=a.surge_rate, iperf_seconds=a.iperf_time,
                          ssh_cc=a.ssh_cc, ssh_skip=skip, workdir=a.workdir)  # type: ignore[arg-type]  # fmt: skip
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
        from bench.plot import plot_goodput

        repeats = []
        for item in a.repeat_json:
            label, _, path = item.partition("=")
            with open(path) as fh:
                repeats.append((label, from_json(json.load(fh))))
        plot_goodput(report, a.png, repeats)
    if a.md:
        from bench.shared import write_section

        write_section(a.md, text, SECTION)
    return 0 if all(r.status in ("ok", "capped") for r in report.runs) else 1


if __name__ == "__main__":
    sys.exit(main())

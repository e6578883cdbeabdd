"""The measurements behind ``python -m bench.wan.accuracy``, usable from tests and benchmarks.

``measure(link, config, stages)`` runs probes (:mod:`bench.wan.probe`) inside the link's
namespaces and returns one :class:`Check` per measured quantity: idle RTT, loss and RTT under
two-way load, and two-way saturated rate. See :mod:`bench.wan.accuracy` for what each stage does.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.wan.link import Side, WanLink
from bench.wan.probe import UDP_IP_OVERHEAD
from bench.wan.spec import LinkSpec

__all__ = ["AccuracyConfig", "Check", "host_steal_ms", "measure"]

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: UDP port of the probe sinks (inside the namespaces, so no clash with the host).
PROBE_PORT = 9000
#: SCHED_FIFO priority of the probes: above ordinary processes, below the emulator's (50).
PROBE_RT_PRIORITY = 20
#: Seconds a probe may take beyond its planned duration before it is declared stuck.
PROBE_SLACK_S = 30.0


@dataclass(frozen=True)
class AccuracyConfig:
    """How much to measure and what counts as accurate."""

    rtt_probes: int = 200
    rtt_interval_s: float = 0.01
    loss_packets: int = 20_000
    load: float = 0.5
    rate_seconds: float = 4.0
    overload: float = 1.1
    payload: int = 1472
    rtt_tolerance_ms: float = 2.0
    rate_tolerance: float = 0.02
    loss_sigmas: float = 3.0
    tool: str = "python"  # "python" or "iperf3" for the rate stage
    #: Ping during the loss stage (RTT under load). Off makes a seeded loss count reproducible:
    #: then only the blasted datagrams draw from each direction's random stream.
    rtt_under_load: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.load < 1:
            raise ValueError(f"load must be within (0, 1), got {self.load}")
        if self.overload <= 1:
            raise ValueError(f"overload must be > 1, got {self.overload}")
        if self.tool not in ("python", "iperf3"):
            raise ValueError(f"tool must be 'python' or 'iperf3', got {self.tool!r}")


@dataclass
class Check:
    """One measured quantity against its expectation."""

    name: str
    measured: float
    expected: float
    tolerance: float
    unit: str
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        verdict = "ok  " if self.ok else "FAIL"
        error = self.measured - self.expected
        return (
            f"[{verdict}] {self.name:<22} {self.measured:12.4f} {self.unit:<7} "
            f"expected {self.expected:.4f} +- {self.tolerance:.4f}  (error {error:+.4f})"
        )


# --------------------------------------------------------------------------- probes


def _probe(link: WanLink, side: Side, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, env.get("PYTHONPATH")) if p)
    return link.popen(
        side,
        [sys.executable, "-m", "bench.wan.probe", "--rt-priority", str(PROBE_RT_PRIORITY), *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout_s)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"probe {proc.args!r} failed with code {proc.returncode}: {out!r}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class _Sink:
    def __init__(self, link: WanLink, side: Side) -> None:
        self.proc = _probe(
            link, side, "sink", "--bind", link.address(side), "--port", str(PROBE_PORT), stdin=True
        )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().strip()
        if ready != "READY":
            raise RuntimeError(f"sink in {side} did not start: {ready!r}")

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.stdin = None
        return _result(self.proc, PROBE_SLACK_S)


def _peer(side: Side) -> Side:
    return "b" if side == "a" else "a"


def _spec(link: WanLink, side: Side) -> LinkSpec:
    """The spec of the direction that starts at ``side``."""
    return link.spec if side == "a" else link.reverse


def _drain_s(link: WanLink) -> float:
    """Seconds for a full queue to empty and its last packet to arrive, plus a margin."""
    worst = 0.0
    for spec in (link.spec, link.reverse):
        worst = max(
            worst,
            spec.effective_queue_bytes * 8 / spec.rate_bps
            + (spec.one_way_delay_ms + spec.jitter_ms) / 1000,
        )
    return worst + 0.3


def _local_drops(link: WanLink, side: Side) -> int:
    """Packets the sending device dropped before the emulator saw them (TUN ring full)."""
    done = subprocess.run(
        ["ip", "-n", link.namespace(side), "-s", "-j", "link", "show", "dev", link.device(side)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return int(json.loads(done.stdout)[0]["stats64"]["tx"]["dropped"])
    except (ValueError, LookupError):
        return 0


# --------------------------------------------------------------------------- stages


def _expected_rtt_ms(link: WanLink, size: int) -> float:
    total = 0.0
    for spec in (link.spec, link.reverse):
        total += spec.one_way_delay_ms + size * 8 / spec.rate_bps * 1000
    return total


def _rtt_check(name: str, result: dict[str, Any], expected: float, tol: float) -> Check:
    rtts = sorted(result["rtt_ms"])
    if not rtts:
        return Check(name, math.nan, expected, tol, "ms", False, {"received": 0})
    median = statistics.median(rtts)
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    detail = {
        "sent": result["sent"],
        "received": result["received"],
        "min_ms": rtts[0],
        "mean_ms": statistics.fmean(rtts),
        "median_ms": median,
        "p99_ms": p99,
        "max_ms": rtts[-1],
        "p99_within_tolerance": abs(p99 - expected) <= tol,
    }
    # The median decides: a host stall (see host_steal_ms) delays every probe in flight by up to
    # 100 ms, which moves the tail, not the median. The tail is reported, not judged.
    ok = abs(median - expected) <= tol
    return Check(name, median, expected, tol, "ms", ok, detail)


def _ping_args(link: WanLink, count: int, interval_s: float) -> list[str]:
    return [
        "ping",
        "--dst",
        link.addr_b,
        "--count",
        str(count),
        "--interval",
        str(interval_s),
        "--timeout",
        "1.5",
    ]


def _rtt_idle(link: WanLink, config: AccuracyConfig) -> Check:
    result = _result(
        _probe(link, "a", *_ping_args(link, config.rtt_probes, config.rtt_interval_s)),
        config.rtt_probes * config.rtt_interval_s + PROBE_SLACK_S,
    )
    return _rtt_check("rtt idle", result, _expected_rtt_ms(link, 84), config.rtt_tolerance_ms)


def _start_blasters(link: WanLink, config: AccuracyConfig, load: float, *limit: str) -> dict[Side, subprocess.Popen[str]]:
    """One paced sender each way, at `load` times the link rate, for as long as `limit` says."""
    def start(side: Side) -> subprocess.Popen[str]:
        return _probe(link, side, "blast", "--dst", link.address(_peer(side)), "--port", str(PROBE_PORT),
                      "--rate", str(load * _spec(link, side).rate_bps), "--size", str(config.payload), *limit)  # fmt: skip

    return {side: start(side) for side in ("a", "b")}


def _loss_and_loaded_rtt(link: WanLink, config: AccuracyConfig) -> list[Check]:
    sinks = {side: _Sink(link, side) for side in ("a", "b")}
    before = link.statistics()
    drops_before = {side: _local_drops(link, side) for side in ("a", "b")}
    wire = (config.payload + UDP_IP_OVERHEAD) * 8
    seconds = max(config.loss_packets * wire / (config.load * _spec(link, s).rate_bps) for s in ("a", "b"))
    blasters = _start_blasters(link, config, config.load, "--count", str(config.loss_packets), "--no-catch-up")
    pinger = None
    if config.rtt_under_load:
        pings = max(1, int(seconds / config.rtt_interval_s))
        pinger = _probe(link, "a", *_ping_args(link, pings, config.rtt_interval_s))
    sent = {side: _result(proc, seconds + PROBE_SLACK_S) for side, proc in blasters.items()}
    checks = []
    if pinger is not None:
        rtt = _result(pinger, seconds + PROBE_SLACK_S)
        checks.append(_rtt_check("rtt under load", rtt, _expected_rtt_ms(link, 84), config.rtt_tolerance_ms))
    time.sleep(_drain_s(link))
    received = {side: sink.stop() for side, sink in sinks.items()}
    after = link.statistics()
    for side in ("a", "b"):
        key = "a_to_b" if side == "a" else "b_to_a"
        # Random loss comes before the queue, so it draws once per datagram sent whatever the
        # queue does; datagrams the queue dropped (after a stall compressed arrivals: see
        # docs/WAN.md) survived the random loss and are not counted as lost by it.
        queue_drops = (after[key]["packets_dropped_queue"] - before[key]["packets_dropped_queue"]
                       if "packets_dropped_queue" in after.get(key, {}) else 0)  # fmt: skip
        local = _local_drops(link, side) - drops_before[side]
        checks.append(_loss_check(link, config, side, sent[side], received[_peer(side)], queue_drops, local))
    return checks


def _loss_check(link: WanLink, config: AccuracyConfig, side: Side, sent: dict[str, Any], received: dict[str, Any],
                queue_drops: int, local: int) -> Check:  # fmt: skip
    """Random loss one way within `config.loss_sigmas` binomial deviations of the setting."""
    p = _spec(link, side).loss
    n = sent["sent"]
    got = received["unique"]
    lost = n - got - queue_drops
    sigma = math.sqrt(n * p * (1 - p))
    tolerance = config.loss_sigmas * sigma
    ok = abs(lost - n * p) <= tolerance and local == 0 and queue_drops <= 0.01 * n
    detail = {"sent": n, "received": got, "lost": lost, "expected_lost": n * p,
              "sender_stalls": sent.get("stalls", 0), "sigma_packets": sigma, "queue_drops": queue_drops,
              "local_drops": local, "reordered": received["reordered"], "duplicates": received["duplicates"]}  # fmt: skip
    return Check(f"loss {side}->{_peer(side)}", lost / n if n else math.nan, p, tolerance / n if n else math.nan,
                 "ratio", ok, detail)  # fmt: skip


def _rate_python(link: WanLink, config: AccuracyConfig) -> list[Check]:
    sinks = {side: _Sink(link, side) for side in ("a", "b")}
    blasters = _start_blasters(link, config, config.overload, "--seconds", str(config.rate_seconds))
    sent = {
        side: _result(proc, config.rate_seconds + PROBE_SLACK_S) for side, proc in blasters.items()
    }
    time.sleep(_drain_s(link))
    received = {side: sink.stop() for side, sink in sinks.items()}
    checks = []
    for side in ("a", "b"):
        rate = _spec(link, side).rate_bps
        got = received[_peer(side)]
        measured = got["rate_bps"] or 0.0
        bins = got["bin_rates_bps"][1:-1]
        checks.append(
            Check(
                f"rate {side}->{_peer(side)}",
                measured / 1e6,
                rate / 1e6,
                config.rate_tolerance * rate / 1e6,
                "Mbit/s",
                abs(measured - rate) <= config.rate_tolerance * rate,
                {
                    "relative_error": measured / rate - 1,
                    "offered_bps": sent[side]["offered_rate_bps"],
                    "seconds": got.get("seconds"),
                    "received": got["unique"],
                    "bin_min_bps": min(bins, default=None),
                    "bin_max_bps": max(bins, default=None),
                    "tool": "python",
                },
            )
        )
    return checks


def _rate_iperf3(link: WanLink, config: AccuracyConfig) -> list[Check]:
    """Both directions with iperf3 --bidir; rate from the receiver's steady-state intervals."""
    rate = max(link.spec.rate_bps, link.reverse.rate_bps)  # --bidir: one -b for both ways
    chrt = ["chrt", "-f", str(PROBE_RT_PRIORITY)] if shutil.which("chrt") else []
    server = link.popen("b", [*chrt, "iperf3", "-s", "-1", "-J"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    seconds = max(3, round(config.rate_seconds))
    args = [*chrt, "iperf3", "-c", link.addr_b, "-u", "--bidir", "-J", "-t", str(seconds),
            "-b", str(int(config.overload * rate)), "-l", str(config.payload), "--get-server-output"]  # fmt: skip
    client = link.run("a", args, capture_output=True, text=True, timeout=seconds + PROBE_SLACK_S, check=False)
    server.communicate(timeout=PROBE_SLACK_S)
    report = json.loads(client.stdout)
    if "error" in report:
        raise RuntimeError(f"iperf3 failed: {report['error']}")
    # The client receives the reverse stream; the server (its output) receives the forward one.
    received = {"b": report["server_output_json"], "a": report}
    checks = []
    for side in ("a", "b"):
        spec_rate = _spec(link, side).rate_bps
        own = received[_peer(side)]
        per_interval = []
        for interval in own["intervals"][1:-1]:  # skip ramp-up and drain
            for stream in interval["streams"]:
                if stream.get("sender") is False:
                    per_interval.append(stream["bits_per_second"])
        payload_bps = statistics.fmean(per_interval) if per_interval else 0.0
        measured = payload_bps * (config.payload + UDP_IP_OVERHEAD) / config.payload
        checks.append(
            Check(
                f"rate {side}->{_peer(side)}",
                measured / 1e6,
                spec_rate / 1e6,
                config.rate_tolerance * spec_rate / 1e6,
                "Mbit/s",
                abs(measured - spec_rate) <= config.rate_tolerance * spec_rate,
                {
                    "relative_error": measured / spec_rate - 1,
                    "intervals": len(per_interval),
                    "tool": "iperf3",
                },
            )
        )
    return checks


def measure(
    link: WanLink,
    config: AccuracyConfig | None = None,
    stages: Sequence[str] = ("rtt", "loss", "rate"),
) -> list[Check]:
    """Run the chosen stages on an open link and return one :class:`Check` per quantity."""
    config = config or AccuracyConfig()
    checks: list[Check] = []
    for stage in stages:
        steal_before = host_steal_ms()
        if stage == "rtt":
            found = [_rtt_idle(link, config)]
        elif stage == "loss":
            found = _loss_and_loaded_rtt(link, config)
        elif stage == "rate":
            rate = _rate_iperf3 if config.tool == "iperf3" else _rate_python
            found = rate(link, config)
        else:
            raise ValueError(f"unknown stage {stage!r} (expected rtt, loss or rate)")
        steal = host_steal_ms() - steal_before
        for check in found:
            check.detail["host_steal_ms"] = steal
        checks += found
    return checks


def host_steal_ms() -> float:
    """CPU time the hypervisor took from this VM so far (all CPUs), from /proc/stat.

    When the host throttles the VM, every vCPU stops, the emulator's real-time priority
    included, and each packet in flight is late by as much (up to 100 ms here)."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return 0.0
    ticks = int(fields[8]) if len(fields) > 8 else 0
    return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")

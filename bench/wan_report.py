"""The WAN benchmark's configuration and results (bench.wan_bench runs them): one :class:`Run` per
tool and (RTT, loss) cell, the report, its Markdown table, the issue's targets, and JSON."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from common.transport.packets import DATA_HEADER_SIZE

__all__ = ["LABELS", "MBIT", "MTU", "SECTION", "SURGE_OVERHEAD", "TOOLS", "BenchConfig", "Report",
           "Run", "fmt", "from_json", "render", "surge_carry_mbps", "table", "targets", "to_json"]  # fmt: skip

SECTION = "## WAN: surge cp vs rsync, scp and TCP on an emulated 100 Mbit/s link (issue 6)"
TOOLS = ("surge", "rsync", "scp", "iperf3-cubic", "iperf3-bbr")
LABELS = {"surge": "surge cp", "rsync": "rsync -e ssh", "scp": "scp",
          "iperf3-cubic": "iperf3 cubic", "iperf3-bbr": "iperf3 bbr"}  # fmt: skip
#: Per 1500-byte IP packet Surge carries 1500 - 20 (IP) - 8 (UDP) - 27 (data header, wire version 2;
#: 36 in version 1) - 16 (AEAD tag) = 1429 file bytes.
SURGE_OVERHEAD = 20 + 8 + DATA_HEADER_SIZE + 16
MTU = 1500
MBIT = 1e6


def surge_carry_mbps(rate_bps: float, mtu: int = MTU) -> float:
    """File bytes the link can carry for Surge after IP, UDP and Surge headers, in Mbit/s."""
    return rate_bps * (mtu - SURGE_OVERHEAD) / mtu / MBIT


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


# -- rendering ----------------------------------------------------------------------------------


def fmt(value: float | None, fmt: str) -> str:
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
    return [fmt(r.wall_goodput_mbps, ".1f"), fmt(r.redundant_pct, ".2f") + " %",
            fmt(r.queue_delay_ms, ".1f") + " ms", fmt(r.rtt_excess_ms, ".1f") + " ms"]  # fmt: skip


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

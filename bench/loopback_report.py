"""The loopback benchmark's cases and results (bench.loopback runs them): the configuration, one
measurement per copy, the report, and its Markdown table and JSON."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import shared
from bench.shared import GB
from common.units import format_bytes

__all__ = ["PAYLOADS", "SECTION", "TOOLS", "BenchConfig", "Case", "Measurement", "Report", "cases",
           "from_json", "gbps", "render", "to_json", "write_section"]  # fmt: skip

SECTION = "## Loopback: surge cp vs raw UDP, scp, rsync (issue 2)"
TOOLS = ("surge", "raw", "scp", "rsync")
PAYLOADS = (65507, 8972)  # loopback default; -Z 9000 (the reference numbers' datagram)
TARGET_VS_RAW = 0.5
TARGET_VS_SCP = 3.0
TARGET_RSS = 200 * 10**6


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


# -- rendering -------------------------------------------------------------------------------


def gbps(size: int, seconds: float | None) -> str | None:
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


def _preamble(report: Report) -> list[str]:
    cfg, mi = report.config, report.machine
    return [
        f"Machine: {mi['nproc']} CPUs ({mi['cpu']}), {mi['memory']} RAM, kernel {mi['kernel']}, "
        f"Python {mi['python']}, cryptography {mi['cryptography']}, {mi['openssh']}, "
        f"{mi['rsync']}; files on {mi['filesystem']}.",
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
    ]


def _tool_rows(report: Report) -> list[str]:
    med, best = statistics.median, max
    lines = [
        "| Tool | Cipher | UDP payload | GB/s data (median / best) | GB/s wall (median / best) "
        "| Retransmitted | Receiver peak RSS | Status |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for case in cases(report.config.tools):
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
    return lines


def _ratio_rows(report: Report) -> list[str]:
    lines = [
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
        lines.append(f"| Receiving agent peak RSS, `surge cp` default, "
                     f"{format_bytes(report.config.size)} | {peak / 1e6:.0f} MB | - "
                     f"| < {TARGET_RSS / 1e6:.0f} MB | {ok} ({peak / TARGET_RSS:.2f}× the limit) |")  # fmt: skip
    return lines


def render(report: Report) -> str:
    lines = [*_preamble(report), "", *_tool_rows(report), "", *_ratio_rows(report)]
    failures = [m for m in report.measurements if not m.ok]
    if report.notes or failures:
        lines.append("")
    lines += [f"- {n}" for n in report.notes]
    lines += [f"- {m.case.label} run {m.run + 1}: {m.status}: {m.detail}" for m in failures]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def write_section(path: str, body: str, heading: str = SECTION) -> None:
    """:func:`bench.shared.write_section`, by default for this benchmark's section."""
    shared.write_section(path, body, heading)


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

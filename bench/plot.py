"""Plots for the WAN benchmark: goodput against RTT, one panel per loss rate, one line per tool
(matplotlib, PNG; ``pip install -e '.[bench]'``)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.wan_report import Report

__all__ = ["plot_goodput"]

_STYLE = {  # tool: (colour, marker)
    "surge": ("#d62728", "o"),
    "rsync": ("#1f77b4", "s"),
    "scp": ("#2ca02c", "^"),
    "iperf3-cubic": ("#7f7f7f", "v"),
    "iperf3-bbr": ("#000000", "D"),
}


def plot_goodput(report: Report, path: str, repeats: Sequence[tuple[str, Report]] = ()) -> None:
    """Goodput (Mbit/s) vs RTT per loss rate; capped runs drawn with hollow markers. Each of
    `repeats` (label, report) adds its Surge runs as a dashed line (another run of the matrix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report.config
    losses = sorted({r.loss for r in report.runs})
    cols = min(3, len(losses))
    rows = math.ceil(len(losses) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.3 * rows + 0.8), sharey=True, squeeze=False
    )
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(losses) :]:
        ax.set_visible(False)
    for ax, loss in zip(flat, losses):
        _goodput_panel(ax, report, loss, repeats)
    for row in axes:
        row[0].set_ylabel("goodput (Mbit/s of file bytes)")
    handles, labels = flat[0].get_legend_handles_labels()
    for ax in flat[1 : len(losses)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle(f"{cfg.size / 2**20:g} MiB over an emulated {cfg.rate_bps / 1e6:g} Mbit/s link, queue one BDP "
                 f"(hollow marker: capped at {cfg.timeout:g} s; dotted: link rate, and what Surge can carry)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _goodput_panel(ax: Any, report: Report, loss: float, repeats: Sequence[tuple[str, Report]]) -> None:
    """One loss rate: a line per tool over RTT, the repeats dashed, the link and Surge's ceiling dotted."""
    from bench.wan_report import LABELS, TOOLS, surge_carry_mbps

    cfg = report.config
    for tool in TOOLS:
        runs = sorted((r for r in report.runs if r.tool == tool and r.loss == loss and r.goodput_mbps is not None),
                      key=lambda r: r.rtt_ms)  # fmt: skip
        if not runs:
            continue
        colour, marker = _STYLE[tool]
        ax.plot([r.rtt_ms for r in runs], [r.goodput_mbps for r in runs], color=colour, lw=1.4, label=LABELS[tool])
        for r in runs:
            ax.plot(r.rtt_ms, r.goodput_mbps, marker=marker, ms=5, color=colour,
                    markerfacecolor="white" if r.capped else colour)  # fmt: skip
    for k, (label, other) in enumerate(repeats):
        ls, mk = (("--", "o"), (":", "x"), ("-.", "+"))[k % 3]
        runs = sorted((r for r in other.runs if r.tool == "surge" and r.loss == loss and r.goodput_mbps is not None),
                      key=lambda r: r.rtt_ms)  # fmt: skip
        if runs:
            ax.plot([r.rtt_ms for r in runs], [r.goodput_mbps for r in runs], color=_STYLE["surge"][0], lw=1.1,
                    ls=ls, marker=mk, ms=4, alpha=0.6, label=label)  # fmt: skip
    ax.axhline(cfg.rate_bps / 1e6, color="#bbbbbb", lw=0.8, ls=":")
    ax.axhline(surge_carry_mbps(cfg.rate_bps), color="#d62728", lw=0.6, ls=":")
    ax.set_title(f"loss {loss * 100:g} %")
    ax.set_xlabel("RTT (ms)")
    ax.set_xticks(list(cfg.rtts))
    ax.set_ylim(0, cfg.rate_bps / 1e6 * 1.05)
    ax.grid(True, alpha=0.3)

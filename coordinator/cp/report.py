"""What `surge cp` tells its user: a live progress bar on a terminal (rich), one status line per
file with -D, the final summary, and the --file-manifest text file."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from common.units import format_bytes, format_rate

from .common import CopyResult
from .options import CopyOptions
from .sources import SourceFile

__all__ = ["Progress", "file_line", "summary", "write_manifest"]


class Progress:
    """A rich progress bar over the bytes to send; inert when not on a terminal or with -q."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled and total > 0:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TimeRemainingColumn,  # fmt: skip
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress("[bold]surge cp", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                     TimeRemainingColumn(), transient=True)  # fmt: skip
            self._task = self._bar.add_task("send", total=total)
            self._bar.start()

    def update(self, stats: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=int(stats.get("bytes_acked", stats.get("bytes_received", 0))))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def file_line(f: SourceFile, event: dict[str, Any]) -> str:
    status = event.get("status", "?")
    extra = event.get("checksum") or event.get("reason") or event.get("error") or ""
    return f"{status:8} {f.rel} {extra}".rstrip()


def summary(result: CopyResult) -> str:
    sender = result.stats.get("sender", {})
    sent = int(sender.get("bytes_sent", 0))
    rexmit = int(sender.get("bytes_retransmitted", 0))
    elapsed = max(float(sender.get("elapsed", 0.0)) or result.elapsed, 1e-6)
    moved = result.bytes_transferred
    done = sum(1 for s in result.status.values() if s.get("status") == "done")
    skipped = sum(1 for s in result.status.values() if s.get("status") == "skipped")
    failed = len(result.files) - done - skipped
    loss = 100.0 * rexmit / sent if sent else 0.0
    state = "Completed" if result.ok else "Failed"
    return (f"{state}: {done} file(s) transferred, {skipped} skipped, {failed + len(result.errors)} failed; "
            f"{format_bytes(moved)} in {elapsed:.2f} s ({format_rate(moved * 8 / elapsed)}); "
            f"retransmitted {format_bytes(rexmit)} ({loss:.2f} % of sent)")  # fmt: skip


def write_manifest(opts: CopyOptions, result: CopyResult) -> str | None:
    """--file-manifest=text: the transferred files, one per line, written under a temporary
    name with --file-manifest-inprogress-suffix and renamed when complete."""
    if opts.file_manifest != "text" or not opts.file_manifest_path:
        return None
    os.makedirs(opts.file_manifest_path, exist_ok=True)
    name = os.path.join(opts.file_manifest_path, f"surge-transfer-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-manifest.txt")
    tmp = name + opts.file_manifest_inprogress_suffix
    with open(tmp, "w", encoding="utf-8") as out:
        for i, f in enumerate(result.files):
            if result.status.get(i, {}).get("status") == "done":
                out.write((f.path or f.rel) + "\n")
    os.replace(tmp, name)
    return name


def print_problems(result: CopyResult, out: TextIO = sys.stderr) -> None:
    for path, problem in result.errors:
        print(f"surge cp: error: {path}: {problem}", file=out)
    for i, f in enumerate(result.files):
        st = result.status.get(i)
        if st is None:
            print(f"surge cp: error: {f.rel}: not confirmed by the far end", file=out)
        elif st.get("status") == "failed":
            print(f"surge cp: error: {f.rel}: {st.get('error', 'failed')}", file=out)

"""`surge cp` across an emulated WAN (bench.wan): a 20 MB file over 100 Mbit/s, 50 ms RTT and 2 %
random loss each way must arrive byte for byte, at a goodput of at least half the link.

A broken rate controller (one that collapses on random loss, or never leaves its start-up rate)
fails this; tuning is the WAN benchmark's job (``python -m bench.wan_bench``, docs/BENCHMARKS.md).
Needs root on Linux with network namespaces and /dev/net/tun: without them it fails with a message
saying so; it never skips.
"""

from __future__ import annotations

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, REPO_ROOT)

from bench.wan import LinkSpec, WanError, WanLink  # noqa: E402
from bench.wan_flow import SurgeFlow  # noqa: E402

SIZE = 20 * 10**6
RATE_BPS = 100e6
MIN_GOODPUT_BPS = RATE_BPS / 2
TIMEOUT_S = 40.0


@pytest.mark.timeout(90)
def test_surge_cp_over_lossy_long_path_is_intact_and_fast(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"this test needs root to build network namespaces and TUN devices (euid {os.geteuid()}); "
                    "run it as root (CI does)")  # fmt: skip
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(SIZE))
    dst = tmp_path / "dst.bin"
    link = WanLink(LinkSpec(rate_bps=RATE_BPS, rtt_ms=50, loss=0.02, seed=62), prefix="wantest")
    try:
        link.open()
    except WanError as exc:
        pytest.fail(f"cannot build the emulated WAN link ({exc}). This test needs root on Linux with network "
                    "namespaces, /dev/net/tun and iproute2; CI runs it as root.")  # fmt: skip
    with link:
        flow = SurgeFlow(
            link, ["-l", "1g", "-O", "33061", str(src), str(dst)], label="wantest"
        ).start()
        try:
            finished = flow.wait(TIMEOUT_S)
        finally:
            flow.stop()
        link_stats = link.statistics()["a_to_b"]
    last = flow.samples[-1] if flow.samples else {}
    assert finished, (f"surge cp did not finish {SIZE} bytes within {TIMEOUT_S:g} s; last sender sample: {last}; "
                      f"{flow.errors}")  # fmt: skip
    assert flow.final is not None and flow.final.get("ok"), f"surge cp failed: {flow.errors}"
    assert dst.stat().st_size == SIZE, f"destination has {dst.stat().st_size} bytes, want {SIZE}"
    assert dst.read_bytes() == src.read_bytes(), "destination differs from the source"
    sender = flow.final["sender"]
    goodput = SIZE * 8 / sender["elapsed"]
    assert goodput >= MIN_GOODPUT_BPS, (
        f"goodput {goodput / 1e6:.1f} Mbit/s < {MIN_GOODPUT_BPS / 1e6:g} Mbit/s (half the link) across 50 ms / 2 %: "
        f"elapsed {sender['elapsed']:.2f} s, sent {sender['bytes_sent']} B "
        f"(redundant {sender['bytes_sent'] / SIZE - 1:.1%}), srtt {sender['srtt']}, loss seen {sender['loss']}, "
        f"rate {sender.get('rate_rate')}, emulator A->B {link_stats}"
    )

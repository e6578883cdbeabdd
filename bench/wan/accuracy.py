"""Measure how faithfully a :class:`WanLink` reproduces its :class:`LinkSpec`.

    sudo .venv/bin/python -m bench.wan.accuracy --rate 100m --rtt 50 --loss 0.01

Three stages, with traffic in both directions at once where it matters:

1. idle RTT: ICMP echo A->B on the idle link;
2. loss, and RTT under load: ``--loss-packets`` UDP datagrams each way at ``--load`` times the
   link rate (below it, so the queue never overflows) while the ICMP echo keeps running; lost
   datagrams are compared with the binomial spread ``N*p +- k*sqrt(N*p*(1-p))``;
3. rate: UDP each way at ``--overload`` times the link rate for ``--seconds``; the receivers
   time-stamp arrivals in the kernel and report IP-layer bits per second.

Measurement uses iperf3 for the rate stage when ``--tool iperf3`` (or ``auto`` and it is
installed; ``apt-get install -y iperf3``), otherwise the small Python probes of
:mod:`bench.wan.probe`. Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bench.wan.link import WanLink
from bench.wan.measure import AccuracyConfig, Check, host_steal_ms, measure
from bench.wan.spec import LinkSpec, parse_rate

__all__ = ["AccuracyConfig", "Check", "host_steal_ms", "main", "measure"]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.wan.accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", default="100m", help="link rate, e.g. 100m, 1g (default 100m)")
    parser.add_argument("--rtt", type=float, default=50.0, help="round-trip time in ms")
    parser.add_argument("--loss", type=float, default=0.01, help="loss probability per direction")
    parser.add_argument("--jitter", type=float, default=0.0, help="jitter in ms (uniform +-)")
    parser.add_argument("--queue", type=int, default=None, help="queue bytes (default: one BDP)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--prefix", default="surgeacc", help="namespace/device name prefix")
    parser.add_argument("--rtt-probes", type=int, default=AccuracyConfig.rtt_probes)
    parser.add_argument("--loss-packets", type=int, default=AccuracyConfig.loss_packets)
    parser.add_argument("--load", type=float, default=AccuracyConfig.load)
    parser.add_argument("--seconds", type=float, default=AccuracyConfig.rate_seconds)
    parser.add_argument("--overload", type=float, default=AccuracyConfig.overload)
    parser.add_argument("--rate-tolerance", type=float, default=AccuracyConfig.rate_tolerance)
    parser.add_argument("--rtt-tolerance", type=float, default=AccuracyConfig.rtt_tolerance_ms)
    parser.add_argument("--tool", choices=("auto", "python", "iperf3"), default="auto")
    parser.add_argument("--stages", default="rtt,loss,rate")
    parser.add_argument("--no-realtime", action="store_true", help="no SCHED_FIFO (comparison)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the emulator to a CPU")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    spec = LinkSpec(rate_bps=parse_rate(args.rate), rtt_ms=args.rtt, loss=args.loss, jitter_ms=args.jitter,
                    queue_bytes=args.queue, seed=args.seed)  # fmt: skip
    tool = args.tool
    if tool == "auto":
        tool = "iperf3" if shutil.which("iperf3") else "python"
    config = AccuracyConfig(rtt_probes=args.rtt_probes, loss_packets=args.loss_packets, load=args.load,
                            rate_seconds=args.seconds, overload=args.overload, rate_tolerance=args.rate_tolerance,
                            rtt_tolerance_ms=args.rtt_tolerance, tool=tool)  # fmt: skip
    with WanLink(spec, prefix=args.prefix, cpu=None if args.no_pin else -1,
                 rt_priority=0 if args.no_realtime else 50) as link:  # fmt: skip
        started = time.monotonic()
        checks = measure(link, config, stages=args.stages.split(","))
        stats = link.statistics()
        elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"spec": asdict(spec), "config": asdict(config), "checks": [asdict(c) for c in checks],
                          "statistics": stats}, indent=2))  # fmt: skip
    else:
        print(f"link: {spec.rate_bps / 1e6:g} Mbit/s, RTT {spec.rtt_ms:g} ms, loss {spec.loss:g}, "
              f"jitter {spec.jitter_ms:g} ms, queue {spec.effective_queue_bytes} B, both ways; "
              f"rate tool {tool}; {elapsed:.1f} s")  # fmt: skip
        _print_checks(checks, stats)
    return 0 if all(c.ok for c in checks) else 1


def _print_checks(checks: Sequence[Check], stats: dict[str, Any]) -> None:
    for check in checks:
        print(check.line())
        if check.detail:
            print("       " + json.dumps(check.detail))
    emulator = stats.get("emulator", {})
    if emulator:
        print(f"emulator: realtime={emulator.get('realtime')} cpu={emulator.get('cpu')} "
              f"cpu_time={emulator.get('cpu_time_s', 0):.2f}s")  # fmt: skip
    for key in ("a_to_b", "b_to_a"):
        d = stats.get(key, {})
        if "release_late_mean_us" in d:
            print(f"{key}: forwarded {d['packets_forwarded']} loss-drops {d['packets_dropped_loss']} "
                  f"queue-drops {d['packets_dropped_queue']} late mean {d['release_late_mean_us']:.1f} us "
                  f"max {d['release_late_max_us']:.1f} us {d['release_late_histogram']}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

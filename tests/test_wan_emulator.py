"""The WAN test bed (bench.wan): the sans-I/O link model with a manual clock, then a real link
between two network namespaces (needs root; fails, never skips, when it cannot be built)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, REPO_ROOT)

from bench.wan import (  # noqa: E402
    DirectionModel,
    LinkSpec,
    WanError,
    WanLink,
    WanUnavailable,
    netem_available,
    parse_rate,
)
from bench.wan.measure import AccuracyConfig, measure  # noqa: E402

MS = 1_000_000  # nanoseconds


# --------------------------------------------------------------------------- spec and model


def test_parse_rate() -> None:
    assert parse_rate("100m") == 100e6
    assert parse_rate("1.5G") == 1.5e9
    assert parse_rate("20Mbit") == 20e6
    assert parse_rate("2e7") == 2e7
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate("fast")


def test_spec_defaults_and_validation() -> None:
    spec = LinkSpec(rate_bps=100e6, rtt_ms=50)
    assert spec.effective_queue_bytes == 625_000  # one BDP
    assert LinkSpec(rate_bps=1e6, rtt_ms=10).effective_queue_bytes == 64 * 1024  # the floor
    assert LinkSpec(queue_bytes=1234).effective_queue_bytes == 1234
    for bad in (
        {"rate_bps": 0},
        {"loss": 1.5},
        {"rtt_ms": -1},
        {"jitter_ms": 30, "rtt_ms": 50},
        {"queue_bytes": 0},
    ):
        with pytest.raises(ValueError, match="LinkSpec"):
            LinkSpec(**bad)


def test_model_serialises_at_link_rate_then_delays() -> None:
    model = DirectionModel(LinkSpec(rate_bps=12e6, rtt_ms=20))  # 1500 B = 1 ms on the wire
    for _ in range(5):
        assert model.offer(0, bytes(1500))
    releases = [release for release, _ in model.pending]  # type: ignore[misc]
    assert releases == [(k + 1) * MS + 10 * MS for k in range(5)]
    assert model.release(12 * MS - 1) == [bytes(1500)]
    assert model.next_release() == 12 * MS
    assert len(model.release(100 * MS)) == 4
    assert model.next_release() is None
    # An idle link starts serialising at the arrival time, not at the end of the last burst.
    assert model.offer(50 * MS, bytes(1500))
    assert model.next_release() == 50 * MS + MS + 10 * MS


def test_model_drop_tail_queue() -> None:
    model = DirectionModel(LinkSpec(rate_bps=12e6, rtt_ms=0, queue_bytes=3000))
    outcomes = [model.offer(0, bytes(1500)) for _ in range(4)]
    assert outcomes == [True, True, False, False]  # 1500 + 1500 fit, the next would be 4500
    assert model.stats.packets_dropped_queue == 2
    assert model.stats.bytes_dropped_queue == 3000
    # Once the first packet has left (1 ms), there is room for one more.
    assert model.offer(MS, bytes(1500))
    assert not model.offer(MS, bytes(1500))


def test_model_loss_is_binomial_and_seeded() -> None:
    spec = LinkSpec(rate_bps=1e12, rtt_ms=0, loss=0.05, seed=7, queue_bytes=1 << 30)
    n = 100_000

    def drops(model: DirectionModel) -> list[int]:
        return [i for i in range(n) if not model.offer(i * 1000, b"x" * 100)]

    first = drops(DirectionModel(spec))
    assert first == drops(DirectionModel(spec))  # same seed, same losses
    assert first != drops(DirectionModel(spec, seed=8))
    sigma = math.sqrt(n * 0.05 * 0.95)
    assert abs(len(first) - n * 0.05) <= 3 * sigma


def test_model_jitter_keeps_order_unless_asked() -> None:
    kept = DirectionModel(LinkSpec(rate_bps=1e9, rtt_ms=20, jitter_ms=5, seed=1))
    free = DirectionModel(LinkSpec(rate_bps=1e9, rtt_ms=20, jitter_ms=5, seed=1, reorder=True))
    for i in range(2000):
        packet = i.to_bytes(4, "big") + bytes(96)
        kept.offer(i * 100_000, packet)
        free.offer(i * 100_000, packet)
    releases = [release for release, _ in kept.pending]  # type: ignore[misc]
    assert releases == sorted(releases)
    assert 5 * MS <= releases[-1] - 1999 * 100_000 <= 15 * MS
    in_order = [int.from_bytes(p[:4], "big") for p in kept.release(10**12)]
    assert in_order == list(range(2000))
    reordered = [int.from_bytes(p[:4], "big") for p in free.release(10**12)]
    assert sorted(reordered) == list(range(2000)) and reordered != list(range(2000))


# --------------------------------------------------------------------------- real link (root)


SPEC = LinkSpec(rate_bps=20e6, rtt_ms=40, loss=0.05, seed=20240601)


def _leftovers(prefix: str) -> list[str]:
    found = []
    for side in ("a", "b"):
        name = f"{prefix}-{side}"
        if os.path.exists(f"/run/netns/{name}"):
            found.append(f"namespace {name}")
        if os.path.exists(f"/sys/class/net/{name}"):
            found.append(f"device {name}")
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone too
        return fh.read().split(")")[-1].split()[0] == "Z"


def _wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def _open(spec: LinkSpec, prefix: str) -> WanLink:
    """Enter a link, turning "this host cannot" into a failure that says so (never a skip)."""
    link = WanLink(spec, prefix=prefix)
    try:
        link.open()
    except WanError as exc:
        pytest.fail(
            f"cannot build the emulated WAN link ({exc}). These tests need root on Linux with "
            "network namespaces, /dev/net/tun and iproute2; CI runs them as root.",
            pytrace=False,
        )
    return link


@pytest.fixture(scope="module")
def link() -> Iterator[WanLink]:
    wan = _open(SPEC, "swtlink")
    try:
        yield wan
    finally:
        wan.close()
    assert _leftovers("swtlink") == []


def test_rtt_within_2ms(link: WanLink) -> None:
    config = AccuracyConfig(rtt_probes=60, rtt_interval_s=0.01)
    (check,) = measure(link, config, stages=["rtt"])
    assert check.detail["received"] >= 40  # 5 % loss each way
    assert check.ok, check.line() + f" {check.detail}"
    assert abs(check.detail["min_ms"] - 40.0) <= 2.0


def test_loss_within_binomial_spread_both_ways(link: WanLink) -> None:
    config = AccuracyConfig(loss_packets=4000, load=0.5, rtt_under_load=False)
    before = link.statistics()
    checks = measure(link, config, stages=["loss"])
    assert [c.name for c in checks] == ["loss a->b", "loss b->a"]
    for check in checks:
        assert check.ok, check.line() + f" {check.detail}"
    after = link.statistics()
    for key in ("a_to_b", "b_to_a"):
        dropped = after[key]["packets_dropped_loss"] - before[key]["packets_dropped_loss"]
        offered = after[key]["packets_in"] - before[key]["packets_in"]
        assert offered >= 4000
        assert abs(dropped - 0.05 * offered) <= 3 * math.sqrt(offered * 0.05 * 0.95) + 1


def test_rate_within_5_percent_both_ways(link: WanLink) -> None:
    config = AccuracyConfig(rate_seconds=2.0, overload=1.1, rate_tolerance=0.05)
    before = link.statistics()
    checks = measure(link, config, stages=["rate"])
    assert [c.name for c in checks] == ["rate a->b", "rate b->a"]
    for check in checks:
        assert check.ok, check.line() + f" {check.detail}"
    after = link.statistics()
    for key in ("a_to_b", "b_to_a"):  # the sender overloads the link: the queue must overflow
        assert after[key]["packets_dropped_queue"] > before[key]["packets_dropped_queue"]
        assert after[key]["queue_peak_bytes"] <= after[key]["queue_limit_bytes"]


def test_namespaces_addresses_and_congestion_control(link: WanLink) -> None:
    shown = link.run(
        "a",
        ["ip", "-4", "addr", "show", "dev", link.dev_a],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{link.addr_a}/30" in shown
    assert link.addr_a.startswith("198.18.") and link.addr_b.startswith("198.18.")
    link.set_congestion_control("a", "cubic")
    link.set_congestion_control("b", "bbr")
    route_a = link.run(
        "a",
        ["ip", "route", "show", f"{link.addr_b}/32"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    route_b = link.run(
        "b",
        ["ip", "route", "show", f"{link.addr_a}/32"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "congctl cubic" in route_a and "congctl bbr" in route_b
    with pytest.raises(WanError, match="not available"):
        link.set_congestion_control("a", "no-such-cc")
    stats = link.statistics()
    assert stats["backend"] == "tun" and stats["emulator"]["realtime"] is True


def test_cleanup_after_exception_kills_processes_and_devices() -> None:
    prefix = "swtexc"
    with (
        pytest.raises(RuntimeError, match="boom"),
        _open(LinkSpec(rate_bps=10e6, rtt_ms=10), prefix) as wan,
    ):
        sleeper = wan.popen("b", ["sleep", "300"])
        emulator_pid = wan.statistics()["emulator"]["pid"]
        assert os.path.exists(f"/run/netns/{prefix}-a")
        raise RuntimeError("boom")
    assert _leftovers(prefix) == []
    assert sleeper.poll() is not None
    assert _gone(emulator_pid)
    with pytest.raises(WanError, match="not open"):
        wan.statistics()


def test_stale_leftovers_are_replaced() -> None:
    prefix = "swtstale"
    subprocess.run(["ip", "netns", "add", f"{prefix}-a"], check=False)
    # A persistent TUN device of the same name, as a crash between create and move would leave.
    subprocess.run(["ip", "tuntap", "add", "dev", f"{prefix}-b", "mode", "tun"], check=False)
    assert os.path.exists(f"/sys/class/net/{prefix}-b")
    stale = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-a", "sleep", "300"])

    def stale_is_inside() -> bool:
        pids = subprocess.run(
            ["ip", "netns", "pids", f"{prefix}-a"], capture_output=True, text=True, check=False
        ).stdout.split()
        return str(stale.pid) in pids

    try:
        assert _wait_until(stale_is_inside)
        with _open(LinkSpec(rate_bps=10e6, rtt_ms=4), prefix) as wan:
            done = wan.run("a", ["ip", "-o", "link", "show"], capture_output=True, text=True)
            assert f"{prefix}-a" in done.stdout  # the TUN device, in a fresh namespace
        assert stale.wait(timeout=5) is not None  # the stale process was stopped
    finally:
        if stale.poll() is None:
            stale.kill()
    assert _leftovers(prefix) == []


_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from bench.wan import LinkSpec, WanLink
with WanLink(LinkSpec(rate_bps=10e6, rtt_ms=10), prefix={prefix!r}) as link:
    sleeper = link.popen("a", ["sleep", "300"])
    print("UP", link.statistics()["emulator"]["pid"], sleeper.pid, flush=True)
    time.sleep(300)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_cleanup_when_the_owner_is_signalled(signum: int) -> None:
    """SIGTERM/SIGINT unwind the with-block; after SIGKILL the orphaned emulator cleans up."""
    prefix = f"swtsig{int(signum)}"
    owner = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT.format(root=REPO_ROOT, prefix=prefix)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline().split()
        assert line and line[0] == "UP", f"the link did not come up: {line}"
        emulator_pid, sleeper_pid = int(line[1]), int(line[2])
        owner.send_signal(signum)
        owner.wait(timeout=15)
        assert _wait_until(lambda: _leftovers(prefix) == []), _leftovers(prefix)
        assert _wait_until(lambda: _gone(emulator_pid))
        assert _wait_until(lambda: _gone(sleeper_pid))
        assert _wait_until(lambda: not os.path.exists(f"/run/surge-wan/{prefix}.pid"))
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_netem_backend_detection() -> None:
    available, reason = netem_available(with_reason=True)
    assert isinstance(available, bool) and reason
    if available:
        with WanLink(LinkSpec(rate_bps=10e6, rtt_ms=10), prefix="swtnetem", backend="netem") as w:
            assert w.statistics()["backend"] == "netem"
    else:
        with pytest.raises(WanUnavailable, match="netem"):
            WanLink(LinkSpec(), prefix="swtnetem", backend="netem").open()
    assert _leftovers("swtnetem") == []

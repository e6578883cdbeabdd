"""`--transfer-threads=N[:SIZE]` in the embedded mode: the assignment of files to size classes and
threads (pure), then real syncs over local agents and `surge server` (UDP on loopback) with
several sessions at once."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import surge_server
from test_sync import free_udp_port, listing, write

from common.control.messages import available_cores
from common.snapshot import Entry
from common.units import Rate
from coordinator.cp.common import CopyError
from coordinator.sync import threads, transfer
from coordinator.sync.engine import SyncReport, run_sync
from coordinator.sync.options import parse_sync_args
from coordinator.sync.threads import assign, lane_options, plan_lanes, session_count, size_classes


def entry(path: str, size: int) -> Entry:
    return Entry(path, "file", size, 0, 0o644, 0, 0, 1)


def paths(lanes: list[list[Entry]]) -> list[list[str]]:
    return [[e.path for e in lane] for lane in lanes]


# -- the assignment (pure) -------------------------------------------------------------------------
def test_classes_are_matched_by_bound_whatever_the_order_given() -> None:
    assert size_classes([(6, None), (2, 128)]) == [(2, 128), (6, None)]
    assert size_classes([(3, 1 << 20), (2, 128)]) == [(2, 128), (3, 1 << 20), (1, None)]  # one session above all bounds
    assert size_classes([(4, None)]) == [(4, None)]


def test_the_reference_example_small_files_to_two_threads_the_rest_to_six() -> None:
    files = [entry("a", 0), entry("b", 128), entry("c", 129), entry("d", 5000)]
    for groups in ([(2, 128), (6, None)], [(6, None), (2, 128)]):
        small, large = assign(files, groups)
        assert paths(small) == [["b"], ["a"]] and paths(large) == [["d"], ["c"]]  # largest first


def test_a_file_above_every_bound_goes_to_one_session() -> None:
    files = [entry("a", 10), entry("b", 200), entry("c", 300)]
    small, rest = assign(files, [(4, 100)])
    assert paths(small) == [["a"]] and paths(rest) == [["b", "c"]]


def test_bytes_are_balanced_and_each_lane_keeps_path_order() -> None:
    files = [entry("a", 5), entry("b", 100), entry("c", 10), entry("d", 90), entry("e", 5)]
    (lanes,) = assign(files, [(2, None)])
    # largest first to the lightest lane (ties: fewer files, then the first lane)
    assert paths(lanes) == [["a", "b"], ["c", "d", "e"]]
    assert [sum(e.size for e in lane) for lane in lanes] == [105, 105]


def test_empty_files_spread_by_count_and_no_lane_is_empty() -> None:
    (lanes,) = assign([entry(f"f{i}", 0) for i in range(5)], [(2, None)])
    assert paths(lanes) == [["f0", "f2", "f4"], ["f1", "f3"]]
    (lanes,) = assign([entry("only", 7)], [(8, None)])
    assert paths(lanes) == [["only"]]
    assert assign([], [(2, 10), (3, None)]) == [[], []]


def test_lanes_start_in_turn_from_each_class() -> None:
    files = [entry(f"s{i}", 10) for i in range(2)] + [entry(f"l{i}", 1000 + i) for i in range(3)]
    lanes = plan_lanes(files, [(2, 100), (3, None)])
    assert paths(lanes) == [["s0"], ["l2"], ["s1"], ["l1"], ["l0"]]


def test_sessions_at_once_are_held_to_both_ends_cores() -> None:
    assert session_count(5, None, cores=2) == 2
    assert session_count(5, 3, cores=8) == 3
    assert session_count(2, 16, cores=8) == 2
    assert session_count(0, None, cores=4) == 1


def test_each_session_gets_its_share_of_the_rates_and_its_own_port() -> None:
    opts = parse_sync_args(["-N", "p", "-d", "/a", "-r", "/b", "-l", "90m", "-m", "3m", "-O", "40000"])
    assert lane_options(opts, 1, 0) is opts
    third = lane_options(opts, 3, 2)
    assert third.target_rate == Rate(bits_per_second=30e6) and third.min_rate == Rate(bits_per_second=1e6)
    assert third.udp_port == 40002 and third.name == "p"


# -- the threads, with fake sessions (no network) -----------------------------------------------------
class FakeEnd:
    udp_host = "127.0.0.1"

    def __init__(self) -> None:
        self.closed = False

    def send(self, msg: dict[str, Any]) -> None:
        pass

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        raise AssertionError("not used")

    def close(self) -> None:
        self.closed = True


def fake_run(lanes: list[list[Entry]], *, fail: str | None = None, refuse: bool = False,
             on_file: Any = None) -> tuple[tuple[int, list[tuple[str, str]]], list[FakeEnd], list[str]]:  # fmt: skip
    opened: list[FakeEnd] = []
    done: list[str] = []

    def connect(opts: Any) -> Any:
        if refuse:
            raise CopyError("no more connections")
        opened.append(FakeEnd())
        return opened[-1]

    def send(opts: Any, endpoint: Any, lane: list[Entry], report: Any, tick: Any) -> tuple[int, list[tuple[str, str]]]:
        for e in lane:
            if e.path == fail:
                raise CopyError("lost")
            report(e.path, {"status": "done"})
        return sum(e.size for e in lane), []

    opts = parse_sync_args(["-N", "p", "-d", "/a", "-r", "/b", "--transfer-threads", "4"])
    result = threads.transfer_in_threads(opts, FakeEnd(), lanes, send=send, connect=connect,  # type: ignore[arg-type]
                                         on_file=on_file or (lambda path, event: done.append(path)),
                                         progress=None, far_cores=4)  # fmt: skip
    return result, opened, done


def test_threads_report_every_file_and_close_what_they_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    lanes = plan_lanes([entry(f"f{i}", i) for i in range(10)], [(5, None)])
    (wire, errors), opened, done = fake_run(lanes)
    assert wire == sum(range(10)) and errors == [] and sorted(done) == sorted(f"f{i}" for i in range(10))
    assert len(opened) == 2 and all(end.closed for end in opened)  # 3 at once: the run's and two more
    no_transfer_thread_left()


def test_a_failed_session_reports_its_files_and_the_others_take_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    lanes = [[entry("a", 1), entry("b", 1)], [entry("c", 1)], [entry("d", 1)], [entry("e", 1)]]
    (_, errors), _, done = fake_run(lanes, fail="b")
    assert errors == [("b", "transfer failed: lost")] and sorted(done) == ["a", "c", "d", "e"]
    (_, errors), opened, done = fake_run(lanes, refuse=True)  # only the run's connection: all over it
    assert errors == [] and sorted(done) == list("abcde") and opened == []


def test_a_callback_error_stops_the_threads_and_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 2)

    def broken(path: str, event: dict[str, Any]) -> None:
        raise OSError("snapshot full")

    with pytest.raises(OSError, match="snapshot full"):
        fake_run([[entry("a", 1)], [entry("b", 1)], [entry("c", 1)]], on_file=broken)
    no_transfer_thread_left()


# -- real syncs -------------------------------------------------------------------------------------
class Spy:
    """Counts the far-end connections and the sessions (with the thread each ran on). With
    `together`, the first sessions wait until that many run at once (the first thread has the
    run's connection and would otherwise send everything small before the others connect)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_on: str | None = None, together: int = 0) -> None:
        self.connects = 0
        barrier = threading.Barrier(together, timeout=60) if together > 1 else None
        self.sessions: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()
        real_connect, real_send = transfer.connect_far_end, transfer.send_files

        def connect(*args: Any, **kw: Any) -> Any:
            with self.lock:
                self.connects += 1
            return real_connect(*args, **kw)

        def send(opts: Any, endpoint: Any, entries: list[Entry], **kw: Any) -> Any:
            with self.lock:
                self.sessions.append((threading.current_thread().name, [e.path for e in entries]))
                first = len(self.sessions) <= together
            if barrier is not None and first:
                barrier.wait()  # raises BrokenBarrierError when they never run at once
            if fail_on is not None and any(e.path == fail_on for e in entries):
                raise CopyError("injected failure")
            return real_send(opts, endpoint, entries, **kw)

        monkeypatch.setattr(transfer, "connect_far_end", connect)
        monkeypatch.setattr(transfer, "send_files", send)


def mixed_tree(root: Path) -> dict[str, bytes]:
    files = {f"small/s{i:02d}": os.urandom(100 + 37 * i) for i in range(12)}
    files.update({f"large/l{i}": os.urandom(300_000 + 50_000 * i) for i in range(4)})
    files.update({"empty": b"", "top": os.urandom(4096)})
    write(root, files)  # type: ignore[arg-type]
    return files


def run(src: Path, dst: Path, *args: str) -> SyncReport:
    opts = parse_sync_args(["-N", "pair", "-d", str(src), "-r", str(dst), "-O", str(free_udp_port()),
                            "-l", "1g", *args])  # fmt: skip
    return run_sync(opts)


def trees(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    return src, dst


def check_once(report: SyncReport, files: dict[str, bytes]) -> None:
    assert report.ok, report.errors
    lines = [p for p, _ in report.lines if p in files]
    assert sorted(lines) == sorted(files)  # every file once
    assert all(status == "SYNCHRONIZED" for p, status in report.lines if p in files)


def no_transfer_thread_left() -> None:
    assert not [t for t in threading.enumerate() if t.name.startswith("surge-transfer")]


@pytest.fixture
def multicore() -> None:
    if available_cores() < 2:
        pytest.skip("one CPU core: --transfer-threads runs one session at once")


@pytest.mark.usefixtures("multicore")
@pytest.mark.parametrize("direction", ["push", "pull"])
def test_two_threads_move_every_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direction: str) -> None:
    src, dst = trees(tmp_path)
    files = mixed_tree(src if direction == "push" else dst)  # a pull brings -r's files to -d
    spy = Spy(monkeypatch, together=2)
    check_once(run(src, dst, "-K", direction, "--transfer-threads", "2"), files)
    assert listing(src) == listing(dst)
    assert spy.connects == 2 and len(spy.sessions) == 2
    assert len({name for name, _ in spy.sessions}) == 2  # two threads
    assert sorted(p for _, lane in spy.sessions for p in lane) == sorted(files)
    no_transfer_thread_left()
    assert run(src, dst, "-K", direction, "--transfer-threads", "2").lines == []  # all recorded


@pytest.mark.usefixtures("multicore")
def test_size_classes_small_and_large_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = trees(tmp_path)
    files = mixed_tree(src)
    monkeypatch.setattr(threads, "available_cores", lambda: 64)  # this end; the agent names its own
    at_once = min(5, available_cores())
    spy = Spy(monkeypatch, together=at_once)
    report = run(src, dst, "--transfer-threads", "2:4096", "--transfer-threads", "3")
    check_once(report, files)
    assert listing(src) == listing(dst)
    lanes = [sorted(lane) for _, lane in spy.sessions]
    small = [lane for lane in lanes if all(os.path.getsize(src / p) <= 4096 for p in lane)]
    large = [lane for lane in lanes if all(os.path.getsize(src / p) > 4096 for p in lane)]
    assert len(small) == 2 and len(large) == 3 and len(lanes) == 5  # no lane mixes the classes
    assert spy.connects == at_once and len({name for name, _ in spy.sessions}) == at_once
    no_transfer_thread_left()
    assert run(src, dst, "--transfer-threads", "2:4096", "--transfer-threads", "3").lines == []


@pytest.mark.usefixtures("multicore")
def test_a_failed_session_loses_nothing_of_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = trees(tmp_path)
    files = mixed_tree(src)
    spy = Spy(monkeypatch, fail_on="large/l0", together=2)
    report = run(src, dst, "--transfer-threads", "2")
    failed = {p for p, _ in report.errors}
    doomed = next(lane for _, lane in spy.sessions if "large/l0" in lane)
    assert failed == set(doomed)  # one error per file of the failed session
    assert all(m == "transfer failed: injected failure" for _, m in report.errors)
    good = set(files) - failed
    assert good and {p for p, s in report.lines if s == "SYNCHRONIZED" and p in files} == good
    assert all((dst / p).read_bytes() == files[p] for p in good)
    monkeypatch.undo()
    again = run(src, dst, "--transfer-threads", "2")
    assert again.ok, again.errors
    assert {p for p, _ in again.lines} == failed  # the others were recorded
    assert listing(src) == listing(dst)


def test_without_the_option_one_session_and_no_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = trees(tmp_path)
    files = mixed_tree(src)
    spy = Spy(monkeypatch)
    check_once(run(src, dst), files)
    assert spy.connects == 1 and [name for name, _ in spy.sessions] == ["MainThread"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    with surge_server(tmp_path / "server", docroot=docroot) as end:
        yield end


@pytest.mark.usefixtures("multicore")
def test_two_threads_to_surge_server(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    files = mixed_tree(src)
    spy = Spy(monkeypatch, together=2)

    def push(*args: str) -> SyncReport:
        opts = parse_sync_args(["-N", "srv", "-d", str(src), "-r", server.remote("/mirror"), *server.auth(),
                                "-O", str(free_udp_port()), "-l", "1g", "--transfer-threads=2", *args])  # fmt: skip
        return run_sync(opts)

    check_once(push("--create-dir"), files)
    assert listing(server.docroot / "mirror") == listing(src)
    assert spy.connects == 2 and len({name for name, _ in spy.sessions}) == 2
    no_transfer_thread_left()
    assert push().lines == []

"""Sync benchmark (issue 4): `surge sync` against `rsync -a` on the same trees in one run.

One run builds a tree of N small files (1-10 KiB of random data, a 3-level directory tree with
about 100 files per leaf directory) and measures, each Surge step next to its rsync counterpart:

1. local to local (the far end a local ``surge agent``, data over UDP on loopback): the initial
   sync; a no-change re-sync (plain, with ``--scan-threads 2``, with ``--assume-no-mods``, with
   ``--exclude-dirs-older-than``) repeated ``--repeats`` times; a re-sync after appending a byte
   to 100 files;
2. to a private system sshd on 127.0.0.1 whose key's forced command runs ``surge agent``: the
   initial sync and the no-change re-sync, against ``rsync -a -e ssh`` through the same sshd;
3. one big file (2 GiB of random data by default, shared with bench.loopback) local to local,
   ``--repeats`` rounds that alternate which tool copies first.

Two floors run beside them (bench/floors.py; not Surge): a bare Python stat walk of the source
(what a no-change re-sync with one scan thread cannot go below) and a bare Python copy of the
tree one file at a time (what a receiver that creates files one by one cannot go below).

Nothing is dropped from the page cache: the source tree has just been written, the big file is
read once before. Every destination is compared with its source (``diff -rq -x .surge``, ``cmp``
for the big file) after each step that writes it; a difference fails the step. It prints one
table (seconds, and Surge's speedup over rsync = rsync seconds / Surge seconds, against the
issue's targets) and can write it as a section of ``docs/BENCHMARKS.md``.

Usage: ``python -m bench.sync_bench [--files 100000] [--big 2G] [--repeats 3] [--no-remote]
[--out docs/BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.shared import machine_info, prepare_source, write_section
from bench.sshtools import LocalSshd, SshUnavailable, add_agent_key, free_udp_port
from bench.sync_report import (
    COMPARISONS,
    SECTION,
    Comparison,
    Report,
    Step,
    SyncBenchConfig,
    render,
)
from bench.sync_trees import TreeSpec, files_equal, make_tree, touch_files, trees_equal
from common.units import UnitError, format_bytes, parse_size

__all__ = ["COMPARISONS", "SECTION", "Comparison", "Report", "Step", "SyncBenchConfig", "TreeSpec", "main",
           "make_tree", "render", "run_bench", "touch_files", "trees_equal"]  # fmt: skip

_SUMMARY = re.compile(
    r"^(Synchronized|Failed): (.*?); (\d+) error\(s\); (\d+) conflict\(s\); ([0-9.]+) s$", re.M
)
_MAX_DETAIL = 400


# -- running one command ---------------------------------------------------------------------


def _run(step: Step, cmd: list[str], timeout: float) -> bool:
    """Run `cmd` once for `step` (stdout discarded); record its wall time, or why it failed."""
    step.load.append(os.getloadavg()[0])
    step.counts = step.summary = ""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        step.status, step.detail = "timeout", f"no end after {timeout:g} s"
        return False
    elapsed = time.monotonic() - started
    m = _SUMMARY.search(err)
    if m:
        step.counts, step.summary = m.group(2), f"{m.group(2)}; {m.group(5)} s"
    if proc.returncode != 0:
        why = " / ".join(err.strip().splitlines())[-_MAX_DETAIL:]
        step.status, step.detail = "failed", f"exit {proc.returncode}: {why}"
        return False
    step.seconds.append(elapsed)
    if step.status == "not run":
        step.status = "ok"
    return step.ok


def _expect(step: Step, ok: bool, why: str) -> None:
    if step.ok and not ok:
        step.status, step.detail = "mismatch", why[:_MAX_DETAIL]


def _skip(step: Step, why: str) -> None:
    """A step that depends on one that failed is not run (it would measure nothing)."""
    step.status, step.detail = "skipped", why


# -- the run ---------------------------------------------------------------------------------


class _Bench:
    def __init__(
        self, cfg: SyncBenchConfig, report: Report, home: str, log: Callable[[str], None]
    ) -> None:
        self.cfg, self.report, self.home, self.log = cfg, report, home, log
        self.src = os.path.join(home, "src")

    def short(self, text: str) -> str:
        return text.replace(self.home, "$W").replace(sys.executable, "python")

    def surge(self, pair: str, src: str, dst: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "coordinator.cli", "sync", "-N", pair, "-d", src, "-r", dst,
                "--create-dir", "-t", "-l", self.cfg.rate, *extra]  # fmt: skip

    def run(self, key: str, label: str, cmd: list[str], after: Step | None = None) -> Step:
        """Run one step (again, for a repeated one), unless it failed before or the step it
        depends on (`after`) did not succeed."""
        step = self.report.step(key, label, cmd, self.short)
        if after is not None and not after.ok:
            _skip(step, f"not run: {after.label} did not succeed")
        elif step.status in ("not run", "ok"):
            _run(step, cmd, self.cfg.timeout)
        last = f"{step.seconds[-1]:.2f} s" if step.ok else step.status
        self.log(f"{label:58} {last:>10}  {step.summary or step.detail[:120]}")
        return step

    def check_tree(self, step: Step, src: str, dst: str) -> None:
        if step.ok:
            _expect(step, *trees_equal(src, dst, self.cfg.timeout))

    def check_counts(self, step: Step, expected: str) -> None:
        """Surge's summary must count exactly what the step should have done (every run of it)."""
        if step.ok and step.counts != expected:
            _expect(step, False, f"surge's summary says {step.counts!r}, expected {expected!r}")

    # -- 1. local to local
    def local(self, spec: TreeSpec) -> None:
        d_surge = os.path.join(self.home, "dst-surge")
        d_rsync = os.path.join(self.home, "dst-rsync")
        initial = self._local_initial(spec, d_surge, d_rsync)
        self._local_nochange(d_surge, d_rsync, initial)
        self._local_touched(spec, d_surge, d_rsync, initial)
        for key in (
            "surge-nochange",
            "surge-nochange-anm",
            "surge-nochange-edot",
            "rsync-nochange",
        ):
            d = d_rsync if key.startswith("rsync") else d_surge
            self.check_tree(self.report.steps[key], self.src, d)

    def _local_initial(self, spec: TreeSpec, d_surge: str, d_rsync: str) -> Step:
        src = self.src
        os.sync()
        s = self.run(
            "rsync-initial", "initial: rsync -a", ["rsync", "-a", src + "/", d_rsync + "/"]
        )
        self.check_tree(s, src, d_rsync)
        os.sync()
        initial = self.run(
            "surge-initial", "initial: surge sync", self.surge("bench", src, d_surge)
        )
        self.check_tree(initial, src, d_surge)
        dirs = spec.leaves + spec.fanout + spec.fanout**2
        self.check_counts(initial, f"{spec.files + dirs} SYNCHRONIZED")
        d_floor = os.path.join(self.home, "dst-floor")
        os.sync()
        s = self.run(
            "floor-copy",
            "initial: bare Python copy, one thread (floor)",
            _floor("copy", src, d_floor),
        )
        self.check_tree(s, src, d_floor)
        shutil.rmtree(d_floor, ignore_errors=True)
        return initial

    def _local_nochange(self, d_surge: str, d_rsync: str, initial: Step) -> None:
        """The no-change re-syncs, interleaved, `repeats` times."""
        src = self.src
        os.sync()
        # The --exclude-dirs-older-than pair: its own first run (not measured; it finds every file
        # already identical at the target) with a limit later than every directory's last change.
        limit = int(time.time()) + 1
        time.sleep(max(0.0, limit + 0.05 - time.time()))
        edot = f"--exclude-dirs-older-than={limit}"
        setup = self.run("surge-edot-first", "setup: first run of the --exclude-dirs-older-than pair",
                         self.surge("bench-edot", src, d_surge, edot), after=initial)  # fmt: skip
        self.check_tree(setup, src, d_surge)
        needs = {"rsync-nochange": None, "surge-nochange-edot": setup}  # default: initial
        for _ in range(self.cfg.repeats):
            for step_key, label, cmd in (
                ("surge-nochange", "no change: surge sync", self.surge("bench", src, d_surge)),
                ("surge-nochange-st2", "no change: surge sync --scan-threads 2",
                 self.surge("bench", src, d_surge, "--scan-threads", "2")),
                ("surge-nochange-anm", "no change: surge sync --assume-no-mods",
                 self.surge("bench", src, d_surge, "--assume-no-mods")),
                ("surge-nochange-edot", "no change: surge sync --exclude-dirs-older-than",
                 self.surge("bench-edot", src, d_surge, edot)),
                ("rsync-nochange", "no change: rsync -a", ["rsync", "-a", src + "/", d_rsync + "/"]),
                ("floor-walk", "no change: bare Python stat walk (floor)", _floor("walk", src)),
            ):  # fmt: skip
                s = self.run(step_key, label, cmd, after=needs.get(step_key, initial))
                if step_key.startswith("surge"):
                    self.check_counts(s, "nothing to do")

    def _local_touched(self, spec: TreeSpec, d_surge: str, d_rsync: str, initial: Step) -> None:
        cfg, src = self.cfg, self.src
        touched = touch_files(src, spec, cfg.touched)
        self.report.notes.append(f"touched files: one byte appended to {len(touched)} files "
                                 f"({touched[0]}, {touched[1]}, ..., {touched[-1]})")  # fmt: skip
        os.sync()
        rsync = ["rsync", "-a", src + "/", d_rsync + "/"]
        s = self.run("rsync-touched", f"{cfg.touched} touched: rsync -a", rsync)
        self.check_tree(s, src, d_rsync)
        os.sync()
        s = self.run("surge-touched", f"{cfg.touched} touched: surge sync", self.surge("bench", src, d_surge),
                     after=initial)  # fmt: skip
        self.check_counts(s, f"{cfg.touched} SYNCHRONIZED")
        self.check_tree(s, src, d_surge)

    # -- 2. over loopback SSH
    def remote(self) -> None:
        cfg, src = self.cfg, self.src
        d_surge, d_rsync = (
            os.path.join(self.home, "dst-ssh-surge"),
            os.path.join(self.home, "dst-ssh-rsync"),
        )
        os.makedirs(d_surge)
        os.makedirs(d_rsync)
        with LocalSshd.start() as sshd:
            agent_key = add_agent_key(sshd)  # its authorized_keys line runs `surge agent`
            self.report.notes.append(f"ssh cipher negotiated by rsync -e ssh: {sshd.cipher}")
            far = f"{sshd.user}@127.0.0.1:"

            def ssh() -> list[
                str
            ]:  # a fresh UDP port each time: an earlier agent may still hold one
                return ["-P", str(sshd.port), "-i", agent_key, "-O", str(free_udp_port())]

            rsync = [
                "rsync",
                "-a",
                "-e",
                shlex.join(sshd.ssh_command()),
                src + "/",
                far + d_rsync + "/",
            ]
            os.sync()
            s = self.run("rsync-ssh-initial", "ssh initial: rsync -a -e ssh", rsync)
            self.check_tree(s, src, d_rsync)
            os.sync()
            initial = s = self.run("surge-ssh-initial", "ssh initial: surge sync → sshd",
                                   self.surge("bench-ssh", src, far + d_surge, *ssh()))  # fmt: skip
            self.check_tree(s, src, d_surge)
            os.sync()
            for _ in range(cfg.repeats):
                for step_key, label, cmd in (
                    ("surge-ssh-nochange", "ssh no change: surge sync → sshd",
                     self.surge("bench-ssh", src, far + d_surge, *ssh())),
                    ("surge-ssh-nochange-anm", "ssh no change: surge sync --assume-no-mods → sshd",
                     self.surge("bench-ssh", src, far + d_surge, *ssh(), "--assume-no-mods")),
                    ("rsync-ssh-nochange", "ssh no change: rsync -a -e ssh", rsync),
                ):  # fmt: skip
                    s = self.run(
                        step_key,
                        label,
                        cmd,
                        after=initial if step_key.startswith("surge") else None,
                    )
                    if step_key.startswith("surge"):
                        self.check_counts(s, "nothing to do")
            for key in ("surge-ssh-nochange", "surge-ssh-nochange-anm", "rsync-ssh-nochange"):
                self.check_tree(
                    self.report.steps[key], src, d_rsync if key.startswith("rsync") else d_surge
                )

    # -- 3. one big file
    def big(self) -> None:
        cfg = self.cfg
        shared = os.path.join(cfg.workdir, "surge-bench-loopback")  # bench.loopback's source file
        os.makedirs(shared, exist_ok=True)
        source = prepare_source(shared, cfg.big)
        bsrc = os.path.join(self.home, "big-src")
        os.makedirs(bsrc)
        name = os.path.join(bsrc, "big.bin")
        try:
            os.link(source, name)  # no second copy of the file
        except OSError:
            shutil.copyfile(source, name)
        tools = [
            ("rsync-big", "big file: rsync -a", "big-rsync", ["rsync", "-a", bsrc + "/", "{dst}/"]),
            ("surge-big", "big file: surge sync", "big-surge", self.surge("bench-big", bsrc, "{dst}", "-x")),
        ]  # fmt: skip
        # Copies of a big file swing 2-3x from one minute to the next here (the page cache and
        # the VM's memory): rounds alternate which tool goes first, and the medians are compared.
        for round_ in range(cfg.repeats):
            for key, label, dst, cmd in tools if round_ % 2 == 0 else tools[::-1]:
                d = os.path.join(self.home, dst)
                os.sync()
                s = self.run(key, label, [c.replace("{dst}", d) for c in cmd])
                if s.ok:
                    _expect(s, *files_equal(name, os.path.join(d, "big.bin"), cfg.timeout))
                shutil.rmtree(d, ignore_errors=True)  # free the space before the next copy
        os.unlink(name)


def _floor(what: str, *paths: str) -> list[str]:
    """The command of a bench/floors.py measurement (a script: it starts like Surge does)."""
    return [
        sys.executable,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "floors.py"),
        what,
        *paths,
    ]


def _free(path: str) -> int:
    return shutil.disk_usage(path).free


@contextmanager
def _workspace(cfg: SyncBenchConfig) -> Iterator[str]:
    base = os.path.join(cfg.workdir, "surge-bench-sync")
    os.makedirs(base, exist_ok=True)
    home = tempfile.mkdtemp(prefix="run-", dir=base)
    try:
        yield home
    finally:
        if not cfg.keep:
            shutil.rmtree(home, ignore_errors=True)


def _compile_surge() -> None:
    """Byte-compile Surge's packages once, so that no step pays for compiling them (an installed
    package is compiled at install time; PYTHONDONTWRITEBYTECODE would compile them every run)."""
    import compileall

    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for d in ("common", "coordinator", "workers"):
        compileall.compile_dir(os.path.join(top, d), quiet=2)


def run_bench(
    cfg: SyncBenchConfig, *, command: str = "", log: Callable[[str], None] = print
) -> Report:
    spec = TreeSpec.for_files(cfg.files, cfg.files_per_dir)
    trees = 3 + (2 if cfg.remote else 0)  # the source, two local and two remote destinations
    need = (
        trees * cfg.files * ((cfg.min_size + cfg.max_size) // 2 + 4096) + 2 * cfg.big
    )  # + one big copy
    if cfg.workdir:
        os.makedirs(cfg.workdir, exist_ok=True)
    if _free(cfg.workdir) < need + (512 << 20):
        raise SystemExit(f"not enough space in {cfg.workdir}: {_free(cfg.workdir) / 1e9:.1f} GB free, "
                         f"need about {need / 1e9:.1f} GB")  # fmt: skip
    report = Report(cfg, machine_info(cfg.workdir), command)
    _compile_surge()
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        report.notes.append(
            "Surge's modules were byte-compiled first (as an installed package is): "
            "PYTHONDONTWRITEBYTECODE is set here, which would compile them on every run"
        )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report.notes.append(f"load average (1/5/15 min) before: {load}")
    with _workspace(cfg) as home:
        bench = _Bench(cfg, report, home, log)
        started = time.monotonic()
        size = make_tree(bench.src, spec, cfg)
        made = time.monotonic() - started
        report.tree = (f"{spec.files:,} files of {format_bytes(cfg.min_size)} to {format_bytes(cfg.max_size)} "
                       f"(random data, {format_bytes(size)} in all) in {spec.fanout}×{spec.fanout}×{spec.fanout} "
                       f"directories ({spec.files // spec.leaves}-{-(-spec.files // spec.leaves)} files per leaf "
                       f"directory), written in {made:.1f} s")  # fmt: skip
        log(f"tree: {report.tree}")
        bench.local(spec)
        if cfg.remote:
            try:
                bench.remote()
            except SshUnavailable as exc:
                report.notes.append(f"SSH steps not measured: {exc}")
                for c in COMPARISONS:
                    if "ssh" in c.surge:
                        report.steps.setdefault(
                            c.surge, Step(c.surge, c.name, "", "failed", detail=str(exc))
                        )
        if cfg.big:
            bench.big()
    report.notes.append(
        "load average (1/5/15 min) after: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.sync_bench", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--files", type=int, default=100_000, help="files in the tree (default 100000)")
    ap.add_argument(
        "--big", default="2G", help="size of the big file, e.g. 2G, 4M; 0 skips it (default 2G)"
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs of each no-change re-sync (default 3)"
    )
    ap.add_argument("--touched", type=int, default=100, help="files appended to (default 100)")
    ap.add_argument("--no-remote", action="store_true", help="skip the loopback SSH steps")
    ap.add_argument("--rate", default="10g", help="surge sync -l (default 10g)")
    ap.add_argument("--workdir", default=tempfile.gettempdir(), help="where the trees go")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per command")
    ap.add_argument("--keep", action="store_true", help="keep the trees")
    ap.add_argument(
        "--out", action="append", default=[], help="a .md file whose section is replaced"
    )
    a = ap.parse_args(argv)
    try:
        big = parse_size(a.big, "--big", minimum=0)
    except UnitError as exc:
        ap.error(str(exc))
    try:
        cfg = SyncBenchConfig(a.files, big, a.workdir, a.repeats, a.touched, not a.no_remote, a.rate, a.timeout,
                              keep=a.keep)  # fmt: skip
    except ValueError as exc:
        ap.error(str(exc))
    command = "python -m bench.sync_bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = run_bench(cfg, command=command.strip())
    text = render(report)
    print()
    print(SECTION)
    print()
    print(text)
    for out in a.out:
        write_section(out, text, SECTION)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

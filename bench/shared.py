"""What the benchmarks share: a description of the machine, the source file (random data, made
once and reused, read into the page cache), comparing and dropping copies, and writing a section
of ``docs/BENCHMARKS.md``."""

from __future__ import annotations

import os
import platform
import subprocess

__all__ = ["GB", "drop", "first_line", "machine_info", "own_rss", "prepare_source", "same_content",
           "write_section"]  # fmt: skip

GB = 1e9


def first_line(cmd: list[str]) -> str:
    """The first line `cmd` prints (stdout, else stderr), or "n/a"."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    return ((p.stdout or p.stderr).strip().splitlines() or ["n/a"])[0]


def machine_info(workdir: str) -> dict[str, str]:
    model = "unknown"
    mem = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model
            )
        with open("/proc/meminfo") as fh:
            mem = f"{int(fh.readline().split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    import cryptography

    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssh": first_line(["ssh", "-V"]),
        "rsync": first_line(["rsync", "--version"]),
        "filesystem": first_line(["findmnt", "-no", "SOURCE,FSTYPE", "-T", workdir]),
    }


def prepare_source(directory: str, size: int) -> str:
    """A file of `size` random bytes in `directory` (reused when there), read once into the
    page cache."""
    path = os.path.join(directory, f"source-{size}.bin")
    if not (os.path.exists(path) and os.path.getsize(path) == size):
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            left = size
            while left:
                n = min(left, 1 << 20)
                fh.write(os.urandom(n))
                left -= n
        os.replace(tmp, path)
    with open(path, "rb", buffering=0) as fh:  # warm the page cache
        buf = bytearray(1 << 20)
        while fh.readinto(buf):
            pass
    return path


def own_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def same_content(a: str, b: str) -> bool:
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def drop(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    os.sync()  # the next tool starts without the last one's dirty pages


def write_section(path: str, body: str, heading: str) -> None:
    """Put `heading` + `body` into the Markdown file at `path`, replacing that section (up to
    the next ``## `` heading) if present; create the file with a ``# Benchmarks`` title."""
    text = "# Benchmarks\n"
    if os.path.exists(path):
        with open(path) as fh:
            text = fh.read()
    block = f"{heading}\n\n{body.rstrip()}\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        nxt = text.find("\n## ", start + len(heading))
        rest = text[nxt + 1 :] if nxt >= 0 else ""
        text = text[:start] + block + ("\n" + rest if rest else "")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)

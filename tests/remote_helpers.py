"""Shared far ends and helpers of the remote `surge cp` tests (tests/test_remote_*.py): Debian's
OpenSSH sshd running `surge agent` as each key's forced command and `surge server` (asyncssh), both
on 127.0.0.1 and living for the whole test module, with a `far` fixture parametrized over the two,
a per-test directory of the shared docroot, and helpers to run `surge cp` and compare files and
listings (trees: cp_e2e_helpers.same_tree)."""

from __future__ import annotations

import filecmp
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import FarEnd, free_udp_port, surge_server, system_sshd

from common.tokens import hash_password

USERS = ("surge", "alice", "pushonly", "plain", "gcm256")  # transfer users of the configuration
PASSWORD = "correct horse battery staple"
TOKEN_SECRET = secrets.token_bytes(32)
_AUTH_ENV = ("SURGE_PASS", "ASPERA_SCP_PASS", "SURGE_TOKEN", "ASPERA_SCP_TOKEN", "SURGE_KEY", "ASPERA_SCP_KEY")
MiB = 1 << 20


# -- the far ends ------------------------------------------------------------------------------


def write_config(path: Path) -> Path:
    path.write_text(f"""\
[server]
token_secret = "{TOKEN_SECRET.hex()}"

[users.alice]
password = "{hash_password(PASSWORD)}"

[users.pushonly]
directions = ["push"]

[users.plain]
cipher = "none"

[users.gcm256]
cipher = "aes256gcm"
""")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The docroot (with a symbolic link pointing outside it), the outside directory, the
    server configuration."""
    base = tmp_path_factory.mktemp("remote")
    docroot, outside = base / "docroot", base / "outside"
    docroot.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the docroot\n")
    (docroot / "links").mkdir()
    (docroot / "links" / "escape").symlink_to(outside, target_is_directory=True)
    return {"base": base, "docroot": docroot, "outside": outside, "config": write_config(base / "surge.toml")}


@pytest.fixture(scope="module")
def sshd_end(world: dict[str, Path]) -> Iterator[FarEnd]:
    with system_sshd(world["base"] / "sshd", docroot=world["docroot"], config=world["config"], users=USERS) as far:
        yield far


@pytest.fixture(scope="module")
def server_end(world: dict[str, Path]) -> Iterator[FarEnd]:
    with surge_server(world["base"] / "server", docroot=world["docroot"], config=world["config"],
                      udp_ports=64) as far:  # fmt: skip
        yield far


@pytest.fixture(params=["sshd", "server"])
def far(request: pytest.FixtureRequest) -> FarEnd:
    return request.getfixturevalue(f"{request.param}_end")


@pytest.fixture
def area(far: FarEnd, request: pytest.FixtureRequest) -> tuple[Path, str]:
    """A fresh directory of the docroot for one test: (local path, remote path)."""
    name = f"{far.kind}-{request.node.originalname}-{secrets.token_hex(3)}"
    assert far.docroot is not None
    local = far.docroot / name
    local.mkdir()
    return local, f"/{name}"


# -- helpers -----------------------------------------------------------------------------------


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _AUTH_ENV}
    env.update(extra or {})
    return env


def _argv(args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "coordinator.cli", "cp", "-l", "1g", "-O", str(free_udp_port()), *args]


def cp(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(args), capture_output=True, text=True, timeout=timeout, env=_env(env))


def start_cp(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(_argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env))


def ok(res: subprocess.CompletedProcess[str], far: FarEnd) -> None:
    assert res.returncode == 0, f"{res.stderr}\n--- {far.kind} log ---\n{far.log_tail()}"
    assert "Completed:" in res.stderr


def refused(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A refusal: non-zero exit, one line on stderr, naming the cause."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0, res.stderr
    assert len(lines) == 1, f"expected one line, got:\n{res.stderr}"
    assert lines[0].startswith("surge cp: error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def listing(root: Path) -> dict[str, object]:
    """Every entry under `root` (links not followed): relative path -> size, 'dir' or link target."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else p.stat().st_size
    return out


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 4 * MiB)
            fh.write(os.urandom(n))
            left -= n
    return path


def same_file(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def no_leftovers(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.suffix in (".partial", ".aspx", ".parts", ".lock")]


def make_tree(root: Path) -> Path:
    src = root / "tree"
    (src / "sub" / "deeper" / "deepest").mkdir(parents=True)
    (src / "emptydir").mkdir()
    random_file(src / "big.bin", 20 * MiB + 7)
    (src / "empty").write_bytes(b"")
    (src / "sub" / "a.txt").write_text("alpha\n")
    random_file(src / "sub" / "deeper" / "b.dat", 70_001)
    random_file(src / "sub" / "deeper" / "deepest" / "c.bin", 1_234_567)
    return src

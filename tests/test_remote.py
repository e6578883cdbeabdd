"""Remote `surge cp` (issue 3) against real far ends on 127.0.0.1: Debian's OpenSSH sshd running
`surge agent` as each key's forced command, and `surge server` (asyncssh, one agent per session).

Every test that can runs against both (`far` is parametrized). Transfers are compared byte for
byte; every refusal must exit non-zero with one `surge cp: error: ...` line naming the cause and
leave the destination exactly as it was. The far ends live for the whole module; each test works
in its own directory of the shared docroot.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import FarEnd, free_udp_port, host_key_fingerprint, keygen, surge_server, system_sshd

from common.tokens import create_token, hash_password

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


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in cmp.common_dirs)


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


# -- transfers ---------------------------------------------------------------------------------


def test_tree_upload_and_download_byte_for_byte(far: FarEnd, area: tuple[Path, str], tmp_path: Path) -> None:
    local, remote = area
    src = make_tree(tmp_path)
    ok(cp(*far.auth(), str(src), far.remote(remote + "/")), far)
    assert same_tree(src, local / "tree")
    assert no_leftovers(local)
    back = tmp_path / "back"
    back.mkdir()
    ok(cp(*far.auth(), far.remote(remote + "/tree"), str(back)), far)
    assert same_tree(src, back / "tree")
    assert (back / "tree" / "empty").stat().st_size == 0 and (back / "tree" / "emptydir").is_dir()
    assert no_leftovers(back)


def test_large_file_up_and_down(far: FarEnd, area: tuple[Path, str], tmp_path: Path) -> None:
    local, remote = area
    src = random_file(tmp_path / "large.bin", 60 * MiB + 3)
    ok(cp(*far.auth(), str(src), far.remote(remote + "/")), far)
    assert same_file(src, local / "large.bin")
    ok(cp(*far.auth(), far.remote(remote + "/large.bin"), str(tmp_path / "again.bin")), far)
    assert same_file(src, tmp_path / "again.bin")
    assert no_leftovers(local) and no_leftovers(tmp_path)


def _three_sessions(*args: str) -> list[subprocess.CompletedProcess[str]]:
    procs = [start_cp("-C", f"{k}:3", "--multi-session-threshold", "1m", *args) for k in (1, 2, 3)]
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_multi_session_three_sessions_on_one_file(far: FarEnd, area: tuple[Path, str], tmp_path: Path) -> None:
    """`-C k:3 --multi-session-threshold 1m`, three concurrent processes, each its own UDP port:
    each carries a third of the file, assembled into one file at the receiving end."""
    local, remote = area
    src = random_file(tmp_path / "ms.bin", 30 * MiB + 11)
    for res in _three_sessions(*far.auth(), str(src), far.remote(remote + "/")):
        ok(res, far)
        assert "1 file(s) transferred" in res.stderr
    assert same_file(src, local / "ms.bin")
    assert no_leftovers(local)
    back = tmp_path / "back"
    back.mkdir()
    for res in _three_sessions(*far.auth(), far.remote(remote + "/ms.bin"), str(back) + "/"):
        ok(res, far)
    assert same_file(src, back / "ms.bin")
    assert no_leftovers(back)


def test_surge_server_password_user(server_end: FarEnd, world: dict[str, Path], tmp_path: Path) -> None:
    """A configuration user with a password hash: SURGE_PASS (or ASPERA_SCP_PASS) right works,
    wrong is refused before anything is written."""
    far, docroot = server_end, world["docroot"]
    (docroot / "pw").mkdir()
    src = random_file(tmp_path / "pw.bin", 100_000)
    before = listing(docroot)
    bad = cp("-P", str(far.port), str(src), far.remote("/pw/", "alice"), env={"SURGE_PASS": "wrong " + PASSWORD})
    refused(bad, "authentication failed", "alice")
    assert listing(docroot) == before
    ok(cp("-P", str(far.port), str(src), far.remote("/pw/", "alice"), env={"SURGE_PASS": PASSWORD}), far)
    assert same_file(src, docroot / "pw" / "pw.bin")
    ok(cp("-P", str(far.port), far.remote("/pw/pw.bin", "alice"), str(tmp_path / "got.bin"),
          env={"ASPERA_SCP_PASS": PASSWORD}), far)  # fmt: skip
    assert same_file(src, tmp_path / "got.bin")


def test_host_fingerprint_checked(far: FarEnd, area: tuple[Path, str], tmp_path: Path) -> None:
    local, remote = area
    src = random_file(tmp_path / "fp.bin", 50_000)
    other = host_key_fingerprint(far.key().with_suffix(".pub"))  # a real key's, not the host's
    refused(cp(*far.auth(), "--check-sshfp", other, str(src), far.remote(remote + "/")), "fingerprint mismatch")
    assert listing(local) == {}
    refused(cp(*far.auth(), "--check-sshfp", other, far.remote(remote + "/x"), str(tmp_path / "dl")),
            "fingerprint mismatch")  # fmt: skip
    assert not (tmp_path / "dl").exists()
    right = host_key_fingerprint(far.host_key_pub)  # sha1 of the base64-decoded blob
    ok(cp(*far.auth(), "--check-sshfp", right, str(src), far.remote(remote + "/")), far)
    assert same_file(src, local / "fp.bin")
    sha256 = host_key_fingerprint(far.host_key_pub, "sha256")
    ok(cp(*far.auth(), "--check-sshfp", sha256, far.remote(remote + "/fp.bin"), str(tmp_path / "dl")), far)
    assert same_file(src, tmp_path / "dl")


# -- refusals ----------------------------------------------------------------------------------


def test_wrong_key_refused(far: FarEnd, area: tuple[Path, str], tmp_path: Path) -> None:
    local, remote = area
    (local / "there.bin").write_bytes(b"x" * 1000)
    before = listing(local)
    stranger = keygen(tmp_path / "stranger")
    src = random_file(tmp_path / "k.bin", 10_000)
    refused(cp("-P", str(far.port), "-i", str(stranger), str(src), far.remote(remote + "/")), "authentication failed")
    refused(cp("-P", str(far.port), "-i", str(stranger), far.remote(remote + "/there.bin"), str(tmp_path / "dl")),
            "authentication failed")  # fmt: skip
    assert listing(local) == before
    assert not (tmp_path / "dl").exists()


ESCAPES_UP = ["../x", "/../../etc", "sub/../../x", "/links/escape/", "/links/escape/planted.bin"]
ESCAPES_DOWN = ["../outside/secret.txt", "/../../etc/passwd", "/links/escape/secret.txt", "/links/escape"]


@pytest.mark.parametrize("dest", ESCAPES_UP)
def test_upload_escaping_docroot_refused(far: FarEnd, world: dict[str, Path], tmp_path: Path, dest: str) -> None:
    src = random_file(tmp_path / "planted.bin", 10_000)
    before = listing(world["docroot"]), listing(world["outside"])
    line = refused(cp(*far.auth(), "-d", str(src), far.remote(dest)), "remote path")
    assert "escapes" in line or "leaves the docroot" in line, line
    assert (listing(world["docroot"]), listing(world["outside"])) == before


@pytest.mark.parametrize("source", ESCAPES_DOWN)
def test_download_escaping_docroot_refused(far: FarEnd, tmp_path: Path, source: str) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    line = refused(cp(*far.auth(), far.remote(source), str(dst)), "remote path")
    assert "escapes" in line or "leaves the docroot" in line, line
    assert listing(dst) == {}


def _outbound_link(area: tuple[Path, str], tmp_path: Path) -> Path:
    """area/escape -> a fresh directory outside the docroot holding secret.txt; returns it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the docroot\n")
    (area[0] / "escape").symlink_to(outside, target_is_directory=True)
    return outside


def test_upload_of_tree_named_like_outbound_link_stays_inside(far: FarEnd, area: tuple[Path, str],
                                                               tmp_path: Path) -> None:  # fmt: skip
    """Uploading a directory called `escape` into a docroot directory where `escape` is a
    symbolic link to a directory outside the docroot: refused, nothing lands outside."""
    outside = _outbound_link(area, tmp_path)
    src = tmp_path / "up" / "escape"
    src.mkdir(parents=True)
    (src / "planted.txt").write_text("should not leave the docroot\n")
    refused(cp(*far.auth(), str(src), far.remote(area[1] + "/")), "outside the docroot", "symbolic link")
    assert listing(outside) == {"secret.txt": 20}
    assert listing(area[0]) == {"escape": f"-> {outside}"}


def test_download_of_directory_with_outbound_link_leaks_nothing(far: FarEnd, area: tuple[Path, str],
                                                                 tmp_path: Path) -> None:  # fmt: skip
    """Downloading a docroot directory holding a symbolic link to a directory outside the
    docroot: the files inside come, the outside ones are reported as errors and never sent."""
    _outbound_link(area, tmp_path)
    (area[0] / "inside.txt").write_text("inside\n")
    dst = tmp_path / "dst"
    dst.mkdir()
    res = cp(*far.auth(), far.remote(area[1]), str(dst))
    assert res.returncode != 0, res.stderr
    assert "secret.txt: reached through a symbolic link that leaves the docroot" in res.stderr
    assert (dst / area[1].lstrip("/") / "inside.txt").read_text() == "inside\n"
    assert "secret.txt" not in {p.name for p in dst.rglob("*")}


def test_private_key_from_aspera_scp_key_instead_of_i(far: FarEnd, area: tuple[Path, str], tmp_path: Path) -> None:
    local, remote = area
    src = tmp_path / "k.txt"
    src.write_text("keyed\n")
    ok(cp("-P", str(far.port), str(src), far.remote(remote + "/"), env={"ASPERA_SCP_KEY": far.key().read_text()}), far)
    assert (local / "k.txt").read_text() == "keyed\n"
    refused(cp("-P", str(far.port), str(src), far.remote(remote + "/x"), env={"ASPERA_SCP_KEY": "-----BEGIN junk"}),
            "ASPERA_SCP_KEY")  # fmt: skip


def test_links_owners_and_delete_before_transfer_both_ways(far: FarEnd, area: tuple[Path, str],
                                                           tmp_path: Path) -> None:  # fmt: skip
    """--symbolic-links copy, --delete-before-transfer and --preserve-file-owner-uid/gid act on
    the local destination of a download and through file operations on that of an upload."""
    local, remote = area
    tree = local / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "f").write_text("f\n")
    (tree / "lf").symlink_to("f")
    root = os.geteuid() == 0
    if root:
        os.chown(tree / "f", 1234, 2345)
    dst = tmp_path / "dst"
    (dst / "tree" / "stale").mkdir(parents=True)
    os.utime(tree / "d", (1_500_000_000, 1_500_000_000))
    ok(cp(*far.auth(), "--symbolic-links=copy", "--delete-before-transfer", "--preserve-file-owner-uid",
          "--preserve-file-owner-gid", "-p", far.remote(remote + "/tree"), str(dst)), far)  # fmt: skip
    assert listing(dst / "tree") == {"d": "dir", "f": 2, "lf": "-> f"}
    assert (dst / "tree" / "d").stat().st_mtime == 1_500_000_000
    if root:
        st = (dst / "tree" / "f").stat()
        assert (st.st_uid, st.st_gid) == (1234, 2345)
    (dst / "tree" / "new").write_text("new\n")
    (local / "back" / "tree" / "old").mkdir(parents=True)
    ok(cp(*far.auth(), "--symbolic-links=copy", "--delete-before-transfer", "-p", str(dst / "tree"),
          far.remote(remote + "/back")), far)  # fmt: skip
    assert listing(local / "back" / "tree") == {"d": "dir", "f": 2, "lf": "-> f", "new": 4}
    assert (local / "back" / "tree" / "d").stat().st_mtime == 1_500_000_000


@pytest.mark.parametrize(("user", "cipher", "says"),
                         [("plain", "aes128", "-c none"), ("gcm256", "aes128cfb", "requires GCM")])  # fmt: skip
def test_cipher_forbidden_by_server_refused(far: FarEnd, area: tuple[Path, str], tmp_path: Path, user: str,
                                            cipher: str, says: str) -> None:  # fmt: skip
    """Server cipher "none" refuses an encrypted transfer; "aes256gcm" refuses CFB."""
    local, remote = area
    (local / "f.bin").write_bytes(b"y" * 5000)
    before = listing(local)
    src = random_file(tmp_path / "c.bin", 10_000)
    refused(cp(*far.auth(user), "-c", cipher, str(src), far.remote(remote + "/", user)), "refuses", says)
    refused(cp(*far.auth(user), "-c", cipher, far.remote(remote + "/f.bin", user), str(tmp_path / "dl")),
            "refuses", says)  # fmt: skip
    assert listing(local) == before
    assert not (tmp_path / "dl").exists()
    allowed = "none" if user == "plain" else "aes128"  # the same user with a cipher the server allows
    ok(cp(*far.auth(user), "-c", allowed, str(src), far.remote(remote + "/", user)), far)
    assert same_file(src, local / "c.bin")


def test_direction_not_allowed_refused(far: FarEnd, area: tuple[Path, str], tmp_path: Path) -> None:
    """A user with directions = ["push"] may upload but not download."""
    local, remote = area
    src = random_file(tmp_path / "d.bin", 10_000)
    ok(cp(*far.auth("pushonly"), str(src), far.remote(remote + "/", "pushonly")), far)
    before = listing(local)
    refused(cp(*far.auth("pushonly"), far.remote(remote + "/d.bin", "pushonly"), str(tmp_path / "dl")),
            "pushonly", "may not")  # fmt: skip
    assert not (tmp_path / "dl").exists()
    assert listing(local) == before


def _token(tmp_path: Path, config: Path, direction: str, path: str, user: str = "surge") -> str:
    """A token made as an operator would: `surge token create`."""
    p = subprocess.run([sys.executable, "-m", "coordinator.cli", "token", "create", "--config", str(config),
                        "--user", user, "--direction", direction, "--path", path, "--ttl", "1h"],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_token_right_one_works(far: FarEnd, world: dict[str, Path], area: tuple[Path, str], tmp_path: Path) -> None:
    local, remote = area
    src = random_file(tmp_path / "t.bin", 200_000)
    push = _token(tmp_path, world["config"], "push", remote)
    ok(cp(*far.auth(), "-W", push, str(src), far.remote(remote + "/")), far)
    assert same_file(src, local / "t.bin")
    pull = _token(tmp_path, world["config"], "download", remote + "/t.bin")
    ok(cp(*far.auth(), far.remote(remote + "/t.bin"), str(tmp_path / "back.bin"), env={"SURGE_TOKEN": pull}), far)
    assert same_file(src, tmp_path / "back.bin")
    bidi = _token(tmp_path, world["config"], "bidi", "/")
    ok(cp(*far.auth(), far.remote(remote + "/t.bin"), str(tmp_path / "bidi.bin"), env={"ASPERA_SCP_TOKEN": bidi}), far)
    assert same_file(src, tmp_path / "bidi.bin")


BAD_TOKENS = {  # kind -> words the refusal must contain
    "garbage": "malformed", "other-secret": "signature", "tampered": "signature", "expired": "expired",
    "direction": "direction", "path": "not covered", "user": "user",
}  # fmt: skip


def _bad_token(kind: str, tmp_path: Path, config: Path, remote: str) -> str:
    """A token that must not allow an upload of `remote` by user "surge"."""
    if kind == "garbage":
        return "not-a-token"
    if kind == "other-secret":
        return create_token(secrets.token_bytes(32), user="surge", direction="push", paths=[remote], ttl=3600)
    if kind == "tampered":
        good = _token(tmp_path, config, "push", remote)
        return good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    if kind == "expired":
        return create_token(TOKEN_SECRET, user="surge", direction="push", paths=[remote], ttl=60,
                            now=time.time() - 3600)  # fmt: skip
    if kind == "direction":
        return _token(tmp_path, config, "pull", remote)
    if kind == "path":
        return _token(tmp_path, config, "push", remote + "-elsewhere")
    assert kind == "user"
    return _token(tmp_path, config, "push", remote, user="alice")


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_bad_token_refused(far: FarEnd, world: dict[str, Path], area: tuple[Path, str], tmp_path: Path,
                           kind: str) -> None:  # fmt: skip
    local, remote = area
    token, says = _bad_token(kind, tmp_path, world["config"], remote), BAD_TOKENS[kind]
    src = random_file(tmp_path / "t.bin", 10_000)
    refused(cp(*far.auth(), "-W", token, str(src), far.remote(remote + "/")), "token", says)
    assert listing(local) == {}


def test_token_for_upload_cannot_download(far: FarEnd, world: dict[str, Path], area: tuple[Path, str],
                                          tmp_path: Path) -> None:  # fmt: skip
    local, remote = area
    (local / "f.bin").write_bytes(b"z" * 1000)
    push = _token(tmp_path, world["config"], "upload", remote)
    refused(cp(*far.auth(), "-W", push, far.remote(remote + "/f.bin"), str(tmp_path / "dl")), "token", "direction")
    assert not (tmp_path / "dl").exists()


# -- load --------------------------------------------------------------------------------------

CLIENTS = 50
BATCH = 10  # clients started together; the batches overlap, so all 50 are in flight at once
BATCH_PAUSE = 0.5  # seconds between batches: spreads the Python start-ups over the 2 cores
DEADLINE = 150.0  # ~20 s on an idle 2-core machine; the margin is for a shared one


def test_fifty_concurrent_clients_against_surge_server(server_end: FarEnd, world: dict[str, Path],
                                                       tmp_path: Path) -> None:  # fmt: skip
    """50 `surge cp` processes against one `surge server` (64 UDP ports, one agent and one port
    per session), 1 MiB each to distinct files, started in overlapping batches: all complete
    intact, and they did run concurrently."""
    far = server_end
    target = world["docroot"] / "load"
    target.mkdir()
    sources = [random_file(tmp_path / f"client{i:02}.bin", MiB) for i in range(CLIENTS)]
    started = time.monotonic()
    running: dict[int, subprocess.Popen[str]] = {}
    for i, src in enumerate(sources):
        if i and i % BATCH == 0:
            time.sleep(BATCH_PAUSE)
        running[i] = start_cp(*far.auth(), str(src), far.remote("/load/"))
    in_flight = sum(p.poll() is None for p in running.values())  # when the last one started
    results: dict[int, tuple[int, str]] = {}
    for i, p in running.items():
        try:
            _out, err = p.communicate(timeout=max(1.0, DEADLINE - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            p.kill()
            _out, err = p.communicate()
        results[i] = (p.returncode, err)
    elapsed = time.monotonic() - started
    failed = [(i, rc, err.strip()[-300:]) for i, (rc, err) in results.items() if rc != 0]
    assert not failed, f"{len(failed)} of {CLIENTS} failed after {elapsed:.0f} s: {failed[:5]}\n{far.log_tail()}"
    for src in sources:
        assert hashlib.sha256((target / src.name).read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert sorted(p.name for p in target.iterdir()) == [s.name for s in sources]
    assert in_flight > BATCH, f"only {in_flight} clients in flight when the last started: not concurrent"


# -- the benchmark's code path -----------------------------------------------------------------


def test_remote_bench_runs_on_a_small_file(tmp_path: Path) -> None:
    """bench.remote end to end on 4 MiB, so its code cannot rot: every tool delivers intact."""
    repo = str(Path(__file__).resolve().parent.parent)
    if repo not in sys.path:  # bench/ is not an installed package
        sys.path.insert(0, repo)
    from bench.remote import SECTION, TOOLS, RemoteBenchConfig, render, run_bench

    report = run_bench(RemoteBenchConfig(size=4 * MiB, workdir=str(tmp_path), timeout=60), log=lambda _line: None)
    assert [r.tool for r in report.results] == list(TOOLS)
    assert all(r.ok for r in report.results), [(r.tool, r.status, r.detail) for r in report.results]
    text = render(report)
    assert "| surge cp → surge server |" in text and "not measured" not in text
    assert SECTION.startswith("## Remote surge cp")

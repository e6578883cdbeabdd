"""Remote `surge cp` (issue 3) transfers against real far ends on 127.0.0.1
(tests/remote_helpers.py): trees and large files up and down byte for byte, multi-session,
password users, host fingerprints, keys from the environment, links/owners/deletions both ways,
50 concurrent clients, and the remote benchmark's code path."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from sshd import FarEnd, host_key_fingerprint

sys.path.insert(0, os.path.dirname(__file__))
from cp_e2e_helpers import same_tree
from remote_helpers import (
    PASSWORD,
    MiB,
    cp,
    listing,
    make_tree,
    no_leftovers,
    ok,
    random_file,
    refused,
    same_file,
    start_cp,
)

pytest_plugins = ["remote_helpers"]  # its fixtures


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


def test_file_lists_with_mode_and_host_both_ways(far: FarEnd, area: tuple[Path, str], tmp_path: Path) -> None:
    """--file-list/--file-pair-list with --mode/--host/--user (the reference's form): a send
    list names local sources, a recv list names the far end's."""
    local, remote = area
    src = make_tree(tmp_path)
    user = far.user_at("surge").split("@")[0]
    host = ["--host=127.0.0.1", f"--user={user}", *far.auth()]
    listing = tmp_path / "send.txt"
    listing.write_text(f"{src / 'empty'}\n{src / 'sub'}\n")
    ok(cp(*host, "--mode=send", f"--file-list={listing}", remote), far)
    assert (local / "empty").read_bytes() == b"" and same_tree(src / "sub", local / "sub")
    pull = tmp_path / "recv.txt"
    pull.write_text(f"{remote}/empty\n{remote}/sub\n")
    back = tmp_path / "back"
    back.mkdir()
    ok(cp(*host, "--mode=recv", f"--file-list={pull}", str(back)), far)
    assert (back / "empty").read_bytes() == b"" and same_tree(src / "sub", back / "sub")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{remote}/empty\nrenamed/uno\n{remote}/sub\nDir2\n")
    ok(cp(*host, "--mode=recv", f"--file-pair-list={pairs}", str(back)), far)
    assert (back / "renamed" / "uno").read_bytes() == b"" and same_tree(src / "sub", back / "Dir2")

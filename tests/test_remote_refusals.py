"""Remote `surge cp` refusals against real far ends on 127.0.0.1 (tests/remote_helpers.py): wrong
keys, docroot escapes, outbound links, forbidden ciphers and directions, and bad tokens. Every
refusal must exit non-zero with one `surge cp: error: ...` line naming the cause and leave the
destination exactly as it was."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sshd import FarEnd, keygen

from common.tokens import create_token

sys.path.insert(0, os.path.dirname(__file__))
from remote_helpers import TOKEN_SECRET, cp, listing, ok, random_file, refused, same_file

pytest_plugins = ["remote_helpers"]  # its fixtures


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

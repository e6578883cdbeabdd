"""One-shot set-up of the docker-compose demo, run by the `init` service before everything else.

Makes, only where missing (so `docker compose up` again keeps them):
- KEYS/ssh_host_ed25519_key: the receiving `surge server`'s SSH host key;
- KEYS/id_ed25519 (+ .pub) and KEYS/authorized_keys: the key the workers log in with;
- SOURCE/demo/: a demo tree of small files (one batch task each few) and two large files (split
  into byte-range tasks), random bytes so that nothing compresses away.

Usage: python init.py KEYS SOURCE
"""

from __future__ import annotations

import os
import sys

import asyncssh

SMALL_FILES = 200
SMALL_SIZE = 64 * 1024
LARGE_FILES = 2
LARGE_SIZE = 96 * 1024 * 1024


def _write_key(path: str, comment: str) -> asyncssh.SSHKey:
    """The private key at `path`, made (mode 0600) if absent."""
    if os.path.exists(path):
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key())
    os.replace(path + ".new", path)
    return key


def make_keys(keys: str) -> None:
    os.makedirs(keys, exist_ok=True)
    _write_key(os.path.join(keys, "ssh_host_ed25519_key"), "surge-receiver")
    client = _write_key(os.path.join(keys, "id_ed25519"), "surge-worker")
    public = client.export_public_key().decode()
    for name in ("id_ed25519.pub", "authorized_keys"):
        with open(os.path.join(keys, name), "w", encoding="ascii") as handle:
            handle.write(public)


def _fill(path: str, size: int) -> None:
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    with open(path + ".new", "wb") as handle:
        for _ in range(0, size, 1 << 20):
            handle.write(os.urandom(min(1 << 20, size)))
        handle.truncate(size)
    os.replace(path + ".new", path)


def make_demo_tree(source: str) -> None:
    small = os.path.join(source, "demo", "small")
    large = os.path.join(source, "demo", "large")
    os.makedirs(small, exist_ok=True)
    os.makedirs(large, exist_ok=True)
    for i in range(SMALL_FILES):
        _fill(os.path.join(small, f"{i:04d}.bin"), SMALL_SIZE)
    for i in range(LARGE_FILES):
        _fill(os.path.join(large, f"big{i}.bin"), LARGE_SIZE)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: init.py KEYS_DIR SOURCE_DIR", file=sys.stderr)
        return 2
    make_keys(argv[0])
    make_demo_tree(argv[1])
    print(f"init: keys in {argv[0]}, demo tree in {argv[1]}/demo")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

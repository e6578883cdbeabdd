"""The benchmarks' SSH far ends: installing OpenSSH and rsync, free ports, keys, and a private
``sshd`` with its own host key, client key, authorized_keys and config.

:class:`SshdKeys` is the part every private sshd shares (files, client options, the sshd command
line); :class:`LocalSshd` runs one on 127.0.0.1 (bench.loopback, bench.remote, bench.sync_bench);
bench.wan_bench starts one per emulated link in a network namespace.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

__all__ = ["SSHD", "LocalSshd", "SshUnavailable", "SshdKeys", "add_agent_key", "ensure_ssh_tools",
           "free_tcp_port", "free_udp_port", "keygen", "wait_for_login"]  # fmt: skip

SSHD = "/usr/sbin/sshd"
_SSH_PACKAGES = ((SSHD, "openssh-server"), ("ssh", "openssh-client"), ("scp", "openssh-client"),
                 ("rsync", "rsync"), ("ssh-keygen", "openssh-client"))  # fmt: skip


class SshUnavailable(Exception):
    """sshd, scp or rsync cannot be installed or started; the message says why."""


def ensure_ssh_tools() -> None:
    """Install what is missing of openssh-server, openssh-client and rsync (root, apt-get)."""
    missing = sorted({pkg for exe, pkg in _SSH_PACKAGES if not shutil.which(exe)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SshUnavailable(
            f"missing {', '.join(missing)} and cannot install them (not root or no apt-get)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise SshUnavailable(f"{shlex.join(cmd)} failed: {p.stderr.strip()[-300:]}")
    still = sorted({pkg for exe, pkg in _SSH_PACKAGES if not shutil.which(exe)})
    if still:
        raise SshUnavailable(f"still missing after apt-get install: {', '.join(still)}")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: str, comment: str = "surge-bench") -> str:
    """A new ed25519 key without passphrase at `path` (and `path`.pub); returns `path`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                   check=True, capture_output=True)  # fmt: skip
    return path


class SshdKeys:
    """The files of a private sshd in `directory`: a host key, a client key that
    authorized_keys lets in (root too, by key only), and the config; plus the client's side."""

    def __init__(self, directory: str, comment: str = "surge-bench") -> None:
        self.directory = directory
        self.host_key = keygen(os.path.join(directory, "host_key"), comment)
        self.client_key = keygen(os.path.join(directory, "client_key"), comment)
        self.authorized_keys = os.path.join(directory, "authorized_keys")
        shutil.copy(self.client_key + ".pub", self.authorized_keys)
        self.ssh_options = ["-F", "/dev/null", "-i", self.client_key, "-o", "IdentitiesOnly=yes",
                            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]  # fmt: skip

    def sshd_argv(self, address: str, port: int) -> list[str]:
        """Write the config for `address`:`port`; the command line of an sshd in the foreground
        that logs to stderr."""
        config = os.path.join(self.directory, "sshd_config")
        with open(config, "w") as fh:
            fh.write("\n".join([
                f"Port {port}", f"ListenAddress {address}",
                f"HostKey {self.host_key}", f"PidFile {self.directory}/sshd.pid",
                f"AuthorizedKeysFile {self.authorized_keys}",
                "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                "StrictModes no", "UsePAM no", "Subsystem sftp internal-sftp", "",
            ]))  # fmt: skip
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        return [SSHD, "-D", "-e", "-f", config]

    def ssh(self, port: int | None = None) -> list[str]:
        return ["ssh", *self.ssh_options, *(["-p", str(port)] if port else [])]

    def scp(self, src: str, remote: str, port: int | None = None) -> list[str]:
        return ["scp", *self.ssh_options, *(["-P", str(port)] if port else []), src, remote]

    def rsync(self, src: str, remote: str, port: int | None = None) -> list[str]:
        return ["rsync", "-e", shlex.join(self.ssh(port)), src, remote]


def wait_for_login(
    ssh: Sequence[str],
    target: str,
    *,
    alive: Callable[[], bool],
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    timeout: float = 15.0,
    pause: float = 0.2,
    what: str = "sshd",
) -> str:
    """Run `true` on `target` through the client command `ssh` (via `run`) until it succeeds,
    `alive()` turns false or `timeout` seconds pass. Returns the cipher the client negotiated
    ("unknown" if it did not say); raises SshUnavailable with ssh's last error otherwise."""
    probe = [o.replace("LogLevel=ERROR", "LogLevel=DEBUG1") for o in ssh]
    deadline = time.monotonic() + timeout
    err = ""
    while time.monotonic() < deadline and alive():
        p = run([*probe, target, "true"], capture_output=True, text=True, timeout=timeout)
        if p.returncode == 0:
            for line in p.stderr.splitlines():
                if "kex: client->server cipher:" in line:
                    return line.split("cipher:", 1)[1].split()[0]
            return "unknown"
        err = p.stderr.strip()[-300:]
        time.sleep(pause)
    raise SshUnavailable(f"{what} did not accept the key: {err}")


class LocalSshd:
    """`sshd -D` on 127.0.0.1 with the files of :class:`SshdKeys` in a temporary directory;
    `start()` is a context manager that always stops it and removes its directory."""

    def __init__(self, keys: SshdKeys, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.keys, self.port, self._proc = keys, port, proc
        self.directory = keys.directory
        self.user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
        self.cipher = "unknown"
        self.scp_mode = "SFTP (OpenSSH >= 9 default)"

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[LocalSshd]:
        """Raises SshUnavailable when it cannot be installed or started."""
        ensure_ssh_tools()
        directory = tempfile.mkdtemp(prefix="surge-bench-sshd-")
        proc: subprocess.Popen[bytes] | None = None
        try:
            keys = SshdKeys(directory)
            port = free_tcp_port()
            with open(os.path.join(directory, "sshd.log"), "wb") as log:
                proc = subprocess.Popen(keys.sshd_argv("127.0.0.1", port), stdout=log, stderr=log,
                                        start_new_session=True)  # fmt: skip
            sshd = cls(keys, port, proc)
            sshd._wait_ready()
        except (
            OSError,
            subprocess.CalledProcessError,
            subprocess.TimeoutExpired,
            SshUnavailable,
        ) as exc:
            cls._stop(proc, directory)
            raise SshUnavailable(f"cannot start sshd: {exc}") from None
        try:
            yield sshd
        finally:
            cls._stop(proc, directory)

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None, directory: str) -> None:
        if proc is not None:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: sshd and its children
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(directory, ignore_errors=True)

    def _wait_ready(self) -> None:
        try:
            self.cipher = wait_for_login(self.ssh_command(), f"{self.user}@127.0.0.1",
                                         alive=lambda: self._proc.poll() is None)  # fmt: skip
        except SshUnavailable as exc:
            with open(os.path.join(self.directory, "sshd.log"), errors="replace") as fh:
                raise SshUnavailable(f"{exc} | sshd log: {fh.read()[-300:]}") from None

    def ssh_command(self) -> list[str]:
        """``ssh`` with the options that log in to this sshd (for ``rsync -e``)."""
        return self.keys.ssh(self.port)

    def scp_command(self, src: str, dst: str) -> list[str]:
        return self.keys.scp(src, f"{self.user}@127.0.0.1:{dst}", self.port)

    def rsync_command(self, src: str, dst: str) -> list[str]:
        return self.keys.rsync(src, f"{self.user}@127.0.0.1:{dst}", self.port)


def add_agent_key(sshd: LocalSshd) -> str:
    """A second client key for the bench's sshd whose authorized_keys line forces `surge agent`
    (sshd reads the file at every login, so it may be added while sshd runs)."""
    key = keygen(os.path.join(sshd.directory, "agent_key"))
    command = shlex.join([sys.executable, "-m", "workers.agent", "--bind", "127.0.0.1"])
    with open(key + ".pub") as fh:
        pub = fh.read().strip()
    with open(sshd.keys.authorized_keys, "a") as fh:
        fh.write(f'command="{command}",no-pty,no-port-forwarding {pub}\n')
    return key

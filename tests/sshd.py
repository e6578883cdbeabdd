"""Far ends for the remote-endpoint tests, as real processes on 127.0.0.1:

* :func:`system_sshd`: Debian's OpenSSH ``sshd`` on a free port with a temporary host key, one
  temporary client key per transfer user, each key's ``authorized_keys`` line a forced command
  running ``surge agent`` (``sys.executable -m workers.agent``) for that user, as Aspera's
  ``aspshell``/ascp setups do;
* :func:`surge_server`: ``surge server`` as a subprocess on a free SSH port and a free range of
  UDP ports, with a temporary host key and ``authorized_keys``.

Both yield a :class:`FarEnd` that builds the ``surge cp`` arguments to reach it, and always stop
what they started. A missing ``/usr/sbin/sshd`` is installed with apt-get; when it cannot be,
:class:`SshdUnavailable` is raised (the tests fail: a skipped test is not a passed one).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SSHD", "FarEnd", "SshdUnavailable", "ensure_sshd", "free_tcp_port", "free_udp_port",
           "free_udp_range", "host_key_fingerprint", "keygen", "surge_server", "system_sshd"]  # fmt: skip

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
_READY_SECONDS = 20.0
_STOP_SECONDS = 40.0  # surge server drains running sessions for up to 30 s


class SshdUnavailable(RuntimeError):
    """The system sshd is missing and cannot be installed, or does not start."""


def ensure_sshd() -> None:
    """Install openssh-server (and with it ssh-keygen) with apt-get when sshd is missing."""
    if os.path.exists(SSHD) and shutil.which("ssh-keygen"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SshdUnavailable(f"{SSHD} is missing and cannot be installed here (not root or no apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "openssh-server"]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if p.returncode != 0:
            raise SshdUnavailable(f"{shlex.join(cmd)} failed (exit {p.returncode}): {p.stderr.strip()[-500:]}")
    if not (os.path.exists(SSHD) and shutil.which("ssh-keygen")):
        raise SshdUnavailable(f"{SSHD} or ssh-keygen still missing after installing openssh-server")


def keygen(path: Path, comment: str = "surge-test") -> Path:
    """A new ed25519 key pair without passphrase at `path` (and `path`.pub)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    return path


def host_key_fingerprint(pub: Path, algorithm: str = "sha1") -> str:
    """Hex digest of the public key blob (the base64 second field of a .pub file): the form
    `surge cp --check-sshfp` takes."""
    blob = base64.b64decode(pub.read_text().split()[1])
    return hashlib.new(algorithm, blob).hexdigest()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_udp_range(count: int, low: int = 20000, high: int = 32000) -> tuple[int, int]:
    """`count` consecutive UDP ports free on 127.0.0.1, below the kernel's ephemeral range (so
    the clients' own sockets do not take them meanwhile). Starts at a pid-dependent place so
    two test runs on one machine rarely collide."""
    span = high - low - count
    start = low + (os.getpid() * 7919) % span
    for step in range(0, span, count):
        base = low + (start - low + step) % span
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("0.0.0.0", port))
            return base, base + count - 1
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {count} consecutive free UDP ports in {low}-{high}")


@dataclass
class FarEnd:
    """One running far end and how `surge cp` reaches it."""

    kind: str  # "sshd" | "server"
    directory: Path  # its keys, configuration and log
    port: int  # SSH port
    host_key_pub: Path
    docroot: Path | None
    keys: dict[str, Path] = field(default_factory=dict)  # transfer user -> client key
    login: str | None = None  # sshd: the system account every key logs in as
    udp_ports: tuple[int, int] | None = None  # surge server: its range
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def user_at(self, user: str) -> str:
        """The `[user@]host` part for a transfer user: sshd logs every key in as the system
        account (the key picks the transfer user); surge server takes the user name itself."""
        return f"{self.login if self.kind == 'sshd' else user}@{HOST}"

    def remote(self, path: str, user: str = "surge") -> str:
        return f"{self.user_at(user)}:{path}"

    def key(self, user: str = "surge") -> Path:
        return self.keys[user] if self.kind == "sshd" else self.keys["*"]

    def auth(self, user: str = "surge") -> list[str]:
        """`-P` and `-i` for `user` (the fixtures' client key)."""
        return ["-P", str(self.port), "-i", str(self.key(user))]

    def log_tail(self, chars: int = 2000) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-chars:]


def _agent_command(user: str, docroot: Path | None, config: Path | None) -> str:
    argv = [sys.executable, "-m", "workers.agent", "--bind", HOST, "--user", user]
    if docroot is not None:
        argv += ["--docroot", str(docroot)]
    if config is not None:
        argv += ["--config", str(config)]
    return shlex.join(argv)


def _stop(proc: subprocess.Popen[bytes] | None, group: bool) -> None:
    """SIGTERM to the process (to its process group when `group`: sshd and its per-connection
    children), SIGKILL if it has not ended within the drain time."""
    if proc is None or proc.poll() is not None:
        return
    send = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    try:
        send(signal.SIGTERM)
        proc.wait(_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def _wait_listening(proc: subprocess.Popen[bytes], port: int, what: str, log: Path) -> None:
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-1000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {HOST}:{port} after {_READY_SECONDS:g} s: "
                       f"{log.read_text(errors='replace')[-1000:]}")  # fmt: skip


@contextmanager
def system_sshd(directory: Path, *, docroot: Path | None = None, config: Path | None = None,
                users: Sequence[str] = ("surge",)) -> Iterator[FarEnd]:  # fmt: skip
    """The system sshd on a free 127.0.0.1 port. Each of `users` gets a client key whose
    authorized_keys line forces `surge agent --user USER [--docroot D] [--config F]`; every key
    logs in as the current system account (root here, hence `PermitRootLogin
    prohibit-password`)."""
    ensure_sshd()
    directory.mkdir(parents=True, exist_ok=True)
    host_key = keygen(directory / "host_key", "surge-test-host")
    keys = {u: keygen(directory / f"client_{u}", f"surge-test-{u}") for u in users}
    lines = [f'command="{_agent_command(u, docroot, config)}",no-pty,no-port-forwarding,'
             f"no-agent-forwarding,no-X11-forwarding {(k.with_suffix('.pub')).read_text().strip()}"
             for u, k in keys.items()]  # fmt: skip
    (directory / "authorized_keys").write_text("\n".join(lines) + "\n")
    port = free_tcp_port()
    sshd_config = directory / "sshd_config"
    sshd_config.write_text("\n".join([
        f"Port {port}", f"ListenAddress {HOST}", f"HostKey {host_key}", f"PidFile {directory}/sshd.pid",
        f"AuthorizedKeysFile {directory}/authorized_keys", "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "StrictModes no", "UsePAM no", "MaxStartups 100:30:200", "MaxSessions 100", "LogLevel VERBOSE", "",
    ]))  # fmt: skip
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    log = directory / "sshd.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(sshd_config)], stdout=fh, stderr=fh,
                                start_new_session=True)  # fmt: skip
    login = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
    far = FarEnd("sshd", directory, port, host_key.with_suffix(".pub"), docroot, keys, login=login, log=log,
                 proc=proc)  # fmt: skip
    try:
        try:
            _wait_listening(proc, port, "sshd", log)
        except RuntimeError as exc:
            raise SshdUnavailable(str(exc)) from None
        yield far
    finally:
        _stop(proc, group=True)


@contextmanager
def surge_server(directory: Path, *, docroot: Path | None = None, config: Path | None = None,
                 udp_ports: int = 64, args: Sequence[str] = ()) -> Iterator[FarEnd]:  # fmt: skip
    """`surge server` on a free SSH port and `udp_ports` consecutive free UDP ports, one client
    key in its authorized_keys (valid for every user without keys of their own), more options
    in `args`; stopped with SIGTERM."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = keygen(directory / "host_key", "surge-test-host")
    client = keygen(directory / "client_key", "surge-test-client")
    shutil.copy(client.with_suffix(".pub"), directory / "authorized_keys")
    port = free_tcp_port()
    lo, hi = free_udp_range(udp_ports)
    argv = [sys.executable, "-m", "coordinator.cli", "server", "--listen", HOST, "--ssh-port", str(port),
            "--udp-port", f"{lo}-{hi}", "--host-key", str(host_key),
            "--authorized-keys", str(directory / "authorized_keys")]  # fmt: skip
    if docroot is not None:
        argv += ["--docroot", str(docroot)]
    if config is not None:
        argv += ["--config", str(config)]
    argv += args
    log = directory / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=fh)
    far = FarEnd("server", directory, port, host_key.with_suffix(".pub"), docroot, {"*": client},
                 udp_ports=(lo, hi), log=log, proc=proc)  # fmt: skip
    try:
        _wait_listening(proc, port, "surge server", log)
        yield far
    finally:
        _stop(proc, group=False)

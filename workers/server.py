"""`surge server`: a self-contained far end with its own SSH server (asyncssh), for containers
and hosts without a system sshd. Every SSH session runs one `surge agent` process (so sessions
use all cores and cannot disturb each other), confined to the user's docroot, its UDP port taken
from the server's range. SIGINT/SIGTERM stop accepting and let running sessions finish.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from typing import Any

from common.metrics import MetricsPortError, parse_metrics_port, serve_metrics
from common.metrics_relay import open_relay, relay_from
from common.serverconfig import ConfigError, ServerConfig, check_password, load_config
from common.sshlib import asyncssh

__all__ = ["SurgeServer", "main"]

_DRAIN_SECONDS = 30.0


class _Auth(asyncssh.SSHServer):
    """Password (scrypt hashes in the configuration) and public keys (the user's own keys, or
    the server's authorized_keys file)."""

    def __init__(self, server: SurgeServer) -> None:
        self.server = server

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        stored = self.server.config.user(username).password_hash
        return bool(stored) and check_password(stored, password)  # type: ignore[arg-type]

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        keys = self.server.keys_for(username)
        peer = self.conn.get_extra_info("peername") or ("", 0)
        return keys is not None and keys.validate(key, "", str(peer[0])) is not None


class SurgeServer:
    def __init__(self, config: ServerConfig, config_path: str | None, *, docroot: str | None = None,
                 python: str = sys.executable) -> None:  # fmt: skip
        self.config = config
        self.config_path = config_path
        self.docroot = docroot
        self.python = python
        self._server: asyncssh.SSHAcceptor | None = None
        self._sessions: set[asyncio.Task[Any]] = set()
        self._global_keys = self._load_key_lines_file(config.authorized_keys)

    @staticmethod
    def _load_key_lines_file(path: str | None) -> asyncssh.SSHAuthorizedKeys | None:
        if not path:
            return None
        try:
            return asyncssh.read_authorized_keys(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"authorized keys {path!r}: {exc}") from None

    def keys_for(self, username: str) -> asyncssh.SSHAuthorizedKeys | None:
        """The user's own keys from the configuration, else the server's authorized_keys."""
        lines = self.config.user(username).authorized_keys
        if lines:
            return asyncssh.import_authorized_keys("\n".join(lines) + "\n")
        return self._global_keys

    async def start(self) -> None:
        cfg = self.config
        if not cfg.host_key:
            raise ConfigError("no SSH host key: give --host-key or [server] host_key")
        self._server = await asyncssh.create_server(
            lambda: _Auth(self), cfg.listen, cfg.ssh_port, server_host_keys=[cfg.host_key],
            process_factory=self._session, encoding=None, allow_scp=False,
            agent_forwarding=False, x11_forwarding=False,
        )  # fmt: skip

    @property
    def ssh_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def _agent_argv(self, username: str) -> list[str]:
        lo, hi = self.config.udp_ports
        argv = [self.python, "-m", "workers.agent", "--user", username, "--udp-ports", f"{lo}-{hi}",
                "--bind", self.config.listen]  # fmt: skip
        if self.config_path:
            argv += ["--config", self.config_path]
        if self.docroot:
            argv += ["--docroot", self.docroot]
        return argv

    async def _session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        if len(self._sessions) >= self.config.max_sessions:
            process.stderr.write(b"surge server: too many sessions, try again later\n")
            process.exit(1)
            return
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        username = process.get_extra_info("username")
        try:
            # The agent reports its UDP sessions' statistics over this pipe, so that this
            # process's metrics endpoint counts them (see common/metrics_relay.py).
            async with asyncio.TaskGroup() as group:
                pipe, wfd = open_relay()
                group.create_task(relay_from(pipe))
                try:
                    agent = await asyncio.create_subprocess_exec(
                        *self._agent_argv(username), "--metrics-fd", str(wfd), pass_fds=(wfd,),
                        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.DEVNULL,
                    )  # fmt: skip
                finally:
                    os.close(wfd)  # the agent holds the only write end: its exit ends the relay
                await process.redirect(stdin=agent.stdin, stdout=agent.stdout)
                status = await agent.wait()
            process.exit(status)
        except* (OSError, asyncssh.Error) as group_exc:
            process.stderr.write(f"surge server: {group_exc.exceptions[0]}\n".encode())
            process.exit(1)
        finally:
            self._sessions.discard(task)

    async def stop(self, drain: float = _DRAIN_SECONDS) -> None:
        """Stop accepting; give running sessions up to `drain` seconds to finish."""
        if self._server is not None:
            self._server.close()
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=drain)


async def _serve(server: SurgeServer) -> None:
    await server.start()
    print(f"surge server: SSH on {server.config.listen}:{server.ssh_port}, UDP {server.config.udp_ports[0]}-"
          f"{server.config.udp_ports[1]}", file=sys.stderr, flush=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("surge server: shutting down, waiting for running sessions", file=sys.stderr, flush=True)
    await server.stop()


def _ports(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        ports = int(lo), int(hi or lo)
    except ValueError:
        raise ConfigError(f"--udp-port: not a port or range: {text!r}") from None
    if not (0 <= ports[0] <= ports[1] <= 65535):
        raise ConfigError(f"--udp-port: out of range: {text!r}")
    return ports


def _metrics_port(text: str) -> int:
    try:
        return parse_metrics_port(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_config(args: argparse.Namespace) -> ServerConfig:
    config = load_config(args.config)
    changes: dict[str, Any] = {}
    if args.listen:
        changes["listen"] = args.listen
    if args.ssh_port is not None:
        changes["ssh_port"] = args.ssh_port
    if args.udp_port:
        changes["udp_ports"] = _ports(args.udp_port)
    if args.host_key:
        changes["host_key"] = args.host_key
    if args.authorized_keys:
        changes["authorized_keys"] = args.authorized_keys
    return dataclasses.replace(config, **changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="surge server", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", help="address for SSH and UDP (default 0.0.0.0)")
    parser.add_argument("--ssh-port", type=int, help="SSH port (default 33001, as Aspera)")
    parser.add_argument("--udp-port", help="UDP data port or range, e.g. 33001-33100")
    parser.add_argument("--host-key", help="SSH host private key file")
    parser.add_argument("--authorized-keys", help="authorized_keys for users without keys of their own")
    parser.add_argument("--docroot", help="confine every user to this directory (overrides the config)")
    parser.add_argument("--config", help="server configuration (TOML; see docs/SERVER.md)")
    parser.add_argument("--metrics-port", metavar="N",
                        help="serve Prometheus metrics on http://LISTEN:N/metrics (docs/METRICS.md)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        config = build_config(args)
        if args.docroot and not os.path.isdir(args.docroot):
            raise ConfigError(f"--docroot: {args.docroot!r} is not a directory")
        server = SurgeServer(config, args.config, docroot=args.docroot)
        if args.metrics_port is not None:
            serve_metrics(_metrics_port(args.metrics_port), config.listen)
        asyncio.run(_serve(server))
    except ConfigError as exc:
        print(f"surge server: error: {exc}", file=sys.stderr)
        return 2
    except MetricsPortError as exc:
        print(f"surge server: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"surge server: error: cannot listen on {args.listen or '0.0.0.0'}:{args.ssh_port}: {exc.strerror}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What an agent knows about the user it serves: the server policy (docroot, directions, cipher,
rates, filters), the token secret, where to bind UDP, and the control channel helpers every
handler uses."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from common.control.framing import ProtocolError, read_message, write_message
from common.filters import Filter, compile_filters
from common.serverconfig import UserPolicy
from common.tokens import TokenError, verify_token
from common.transport.sockopts import SocketFeatures, open_udp_socket

__all__ = ["AgentContext", "Channel", "Refused", "stats_json"]


class Refused(Exception):
    """A request the agent will not serve; `code` is sent to the client with the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Channel:
    """Framed control messages over a pair of binary streams (stdin/stdout of the agent)."""

    def __init__(self, rin: BinaryIO, wout: BinaryIO) -> None:
        self.rin, self.wout = rin, wout
        self._lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        with self._lock:
            write_message(self.wout, msg)

    def recv(self, *expected: str) -> dict[str, Any]:
        msg = read_message(self.rin)
        if msg["type"] == "error":
            raise ProtocolError(f"peer error: {msg.get('message')}")
        if expected and msg["type"] not in expected:
            raise ProtocolError(f"expected {' or '.join(expected)}, got {msg['type']!r}")
        return msg

    def refuse(self, code: str, message: str) -> int:
        self.send({"type": "error", "code": code, "message": message})
        return 1


@dataclass
class AgentContext:
    user: str
    policy: UserPolicy = field(default_factory=UserPolicy)
    token_secret: bytes | None = None
    udp_ports: tuple[int, int] | None = None  # a server's range; None: the port the client asks
    bind_host: str = "127.0.0.1"
    token: str | None = None  # presented by the client in its hello
    port_fallback: bool = False  # a local agent: any free port when the client's -O is taken

    def filters(self) -> Filter:
        """The server's own filter rules (aspera.conf's): applied before the client's, to every
        transfer and listing; a client may not see or move what they exclude."""
        return compile_filters(self.policy.filters)

    def resolve(self, path: str) -> str:
        """A client path as a local path inside the user's docroot (PathError otherwise)."""
        return self.policy.resolve(path)

    def roots(self) -> tuple[str, ...]:
        """Real paths every file this user touches must stay under (empty: unconfined)."""
        if self.policy.docroot is not None:
            return (os.path.realpath(self.policy.docroot),)
        return tuple(os.path.realpath(r) for r in self.policy.restrictions)

    def confined(self, path: str) -> bool:
        """Does `path` (through every symbolic link) stay inside the user's roots?"""
        roots = self.roots()
        if not roots:
            return True
        real = os.path.realpath(path)
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

    def authorize(self, direction: str, paths: list[str]) -> None:
        """Direction allowed for the user, and, when the client presented a token, the token
        valid for this user, direction and every path. Raises Refused."""
        try:
            self.policy.check_direction(direction)
        except PermissionError as exc:
            raise Refused("direction", str(exc)) from None
        if self.token is None:
            return
        if self.token_secret is None:
            raise Refused("token", "this server does not accept tokens (no token secret configured)")
        try:
            verify_token(self.token_secret, self.token, user=self.user, direction=direction,  # type: ignore[arg-type]
                         paths=paths)  # fmt: skip
        except TokenError as exc:
            raise Refused("token", f"token refused: {exc}") from None

    def bind_udp(self, requested: int) -> tuple[socket.socket, SocketFeatures]:
        """The session's UDP socket: a free port of the server's range, or the client's -O."""
        ports = range(self.udp_ports[0], self.udp_ports[1] + 1) if self.udp_ports else [requested]
        last: OSError | None = None
        for port in ports:
            try:
                return open_udp_socket(self.bind_host, port, gro=True)
            except OSError as exc:
                last = exc
        if self.port_fallback and not self.udp_ports:
            try:  # loopback only: two local copies at once must not collide on 33001
                return open_udp_socket(self.bind_host, 0, gro=True)
            except OSError as exc:
                last = exc
        what = f"any UDP port in {self.udp_ports[0]}-{self.udp_ports[1]}" if self.udp_ports else f"UDP port {requested}"
        raise Refused("port", f"-O: cannot use {what}: {last.strerror if last else 'no port'}")


def stats_json(stats: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in stats.items() if isinstance(v, (int, float, str, dict))}

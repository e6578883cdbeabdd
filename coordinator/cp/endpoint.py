"""The far end of a copy, as the client sees it: a channel for control messages and the host
where its UDP port listens. `LocalAgent` runs `surge agent` as a child process on this machine
(the local `surge cp`); the SSH endpoint of the remote issue offers the same interface."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from typing import Any, BinaryIO, Protocol, cast

from common.control.framing import ProtocolError, read_message, write_message

__all__ = ["CommandEndpoint", "Endpoint", "EndpointError", "LocalAgent", "close_politely"]

Message = dict[str, Any]


class EndpointError(Exception):
    """The far end could not be started or reached, or went away."""


class Endpoint(Protocol):
    udp_host: str

    def send(self, msg: Message) -> None: ...

    def recv(self, timeout: float | None = None) -> Message: ...

    def close(self) -> None: ...


def close_politely(endpoint: Endpoint) -> None:
    """Tell the far end the session is over (best effort: it may be gone), then close."""
    try:
        endpoint.send({"type": "bye"})
    except EndpointError:
        pass
    endpoint.close()


class CommandEndpoint:
    """Any command that speaks the control protocol on its stdin/stdout: `surge agent` here,
    `ip netns exec NS surge agent` in the WAN bench, `ssh host surge agent` remotely."""

    def __init__(self, argv: list[str], udp_host: str, *, env: dict[str, str] | None = None,
                 debug: bool = False) -> None:  # fmt: skip
        self.udp_host = udp_host
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=None if debug else subprocess.DEVNULL, env=env,
            )  # fmt: skip
        except OSError as exc:
            raise EndpointError(f"cannot start the far end ({argv[0]}): {exc.strerror}") from None
        self._inbox: queue.Queue[Message | BaseException] = queue.Queue(maxsize=10_000)
        self._reader = threading.Thread(target=self._read, name="surge-control-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        try:
            while True:
                self._inbox.put(read_message(cast(BinaryIO, self._proc.stdout)))
        except (EOFError, ProtocolError, OSError) as exc:
            self._inbox.put(exc)

    def send(self, msg: Message) -> None:
        assert self._proc.stdin is not None
        try:
            write_message(cast(BinaryIO, self._proc.stdin), msg)
        except (BrokenPipeError, OSError):
            raise EndpointError("the agent went away") from None

    def recv(self, timeout: float | None = None) -> Message:
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no answer from the agent") from None
        if isinstance(item, BaseException):
            self._inbox.put(item)  # stay failed for later calls
            if isinstance(item, EOFError):
                raise EndpointError("the agent closed the control channel") from None
            raise EndpointError(f"control channel failed: {item}") from None
        return item

    def close(self) -> None:
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def LocalAgent(*, debug: bool = False, ipv6: bool = False) -> CommandEndpoint:
    """`surge agent` as a child process of this one, its UDP port on loopback."""
    host = "::1" if ipv6 else "127.0.0.1"
    env = dict(os.environ, SURGE_AGENT_BIND=host, SURGE_AGENT_PORT_FALLBACK="1")
    return CommandEndpoint([sys.executable, "-m", "workers.agent"], host, env=env, debug=debug)

"""The far end over SSH: `surge agent` run as the remote command (by the system sshd or by
`surge server`), its stdin/stdout the control channel. asyncssh runs in a thread of its own;
the copy sees the same blocking `Endpoint` interface as the local agent's."""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import threading
from typing import Any

from common.control.framing import FrameDecoder, ProtocolError, encode_message
from common.sshlib import asyncssh

from .endpoint import EndpointError

__all__ = ["SshEndpoint", "key_fingerprint"]

Message = dict[str, Any]


def key_fingerprint(key: asyncssh.SSHKey, algorithm: str = "sha1") -> str:
    """Hex digest of the public key blob without colons (the reference's fingerprint form)."""
    return hashlib.new(algorithm, key.public_data).hexdigest()


def _key_path(name: str) -> str:
    """-i accepts a bare file name for a key in ~/.ssh (as ascp does)."""
    if os.sep in name or os.path.exists(name):
        return name
    return os.path.join(os.path.expanduser("~"), ".ssh", name)


class SshEndpoint:
    def __init__(self, host: str, *, port: int = 22, user: str | None = None, keys: tuple[str, ...] = (),
                 key_text: str | None = None, password: str | None = None, check_sshfp: str | None = None,
                 command: str = "surge agent", connect_timeout: float = 30.0) -> None:  # fmt: skip
        self._inbox: queue.Queue[Message | BaseException] = queue.Queue(maxsize=10_000)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="surge-ssh", daemon=True)
        self._thread.start()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._proc: asyncssh.SSHClientProcess[bytes] | None = None
        where = f"{user + '@' if user else ''}{host}:{port}"
        future = asyncio.run_coroutine_threadsafe(
            self._open(host, port, user, keys, key_text, password, check_sshfp, command), self._loop)
        try:
            future.result(timeout=connect_timeout + 5)
        except asyncssh.PermissionDenied:
            self._stop()
            raise EndpointError(f"authentication failed for {where} (wrong key or password)") from None
        except asyncssh.HostKeyNotVerifiable as exc:
            self._stop()
            raise EndpointError(f"host key of {host} not verified: {exc.reason}") from None
        except asyncssh.Error as exc:
            self._stop()
            raise EndpointError(f"SSH to {where} failed: {exc.reason}") from None
        except (OSError, TimeoutError) as exc:
            self._stop()
            raise EndpointError(f"cannot connect to {where}: {getattr(exc, 'strerror', None) or exc}") from None
        except EndpointError:
            self._stop()
            raise

    async def _open(self, host: str, port: int, user: str | None, keys: tuple[str, ...], key_text: str | None,
                    password: str | None, check_sshfp: str | None, command: str) -> None:  # fmt: skip
        client_keys: list[Any] = [_key_path(k) for k in keys]
        if key_text is not None:
            try:
                client_keys.insert(0, asyncssh.import_private_key(key_text))
            except (asyncssh.KeyImportError, ValueError):
                raise EndpointError("ASPERA_SCP_KEY: not a private key this client can read "
                                    "(PEM or OpenSSH text, unencrypted)") from None  # fmt: skip
        options: dict[str, Any] = {
            "port": port, "known_hosts": None, "password": password,
            "client_keys": client_keys, "agent_path": None, "connect_timeout": 30,
        }  # fmt: skip
        if not client_keys and password is None:
            options.pop("client_keys")  # fall back to the user's default keys
        if user:
            options["username"] = user
        conn = await asyncssh.connect(host, **options)
        if check_sshfp:
            key = conn.get_server_host_key()
            want = check_sshfp.lower().replace(":", "")
            algo = "sha256" if len(want) == 64 else "sha1"
            got = key_fingerprint(key, algo) if key is not None else ""
            if got != want:
                conn.close()
                raise EndpointError(f"host key fingerprint mismatch for {host}: expected {want}, got {got}")
        self._conn = conn
        self.udp_host = conn.get_extra_info("peername")[0]
        self._proc = await conn.create_process(command, encoding=None)
        self._loop.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None
        decoder = FrameDecoder()
        try:
            while True:
                data = await self._proc.stdout.read(1 << 16)
                if not data:
                    self._inbox.put(EOFError())
                    return
                for msg in decoder.feed(data):
                    self._inbox.put(msg)
        except (ProtocolError, asyncssh.Error, OSError) as exc:
            self._inbox.put(exc)

    def send(self, msg: Message) -> None:
        data = encode_message(msg)
        proc = self._proc
        if proc is None:
            raise EndpointError("SSH session not open")
        self._loop.call_soon_threadsafe(proc.stdin.write, data)

    def recv(self, timeout: float | None = None) -> Message:
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no answer from the far end") from None
        if isinstance(item, BaseException):
            self._inbox.put(item)
            if isinstance(item, EOFError):
                raise EndpointError("the far end closed the SSH session (is `surge agent` installed there?)")
            raise EndpointError(f"SSH session failed: {item}")
        return item

    def close(self) -> None:
        async def shutdown() -> None:
            if self._proc is not None:
                self._proc.stdin.write_eof()
                try:
                    await asyncio.wait_for(self._proc.wait_closed(), 5)
                except (TimeoutError, asyncssh.Error):
                    pass
            if self._conn is not None:
                self._conn.close()
                await self._conn.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        except Exception:
            pass
        self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

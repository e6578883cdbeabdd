"""A private redis-server for tests: a free port on 127.0.0.1, optional password, no disk
persistence unless asked, stopped (and restartable on the same port) by the test.

    with redis_server(password="s3cret") as srv:
        r = redis.Redis.from_url(srv.url)
        ...
        srv.restart()  # same port, same password; data kept only with persist=True
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["RedisServer", "redis_server"]

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    password: str | None
    workdir: str
    persist: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--bind", HOST, "--port", str(self.port), "--dir", self.workdir,
                "--save", "", "--appendonly", "yes" if self.persist else "no", "--protected-mode", "no",
                "--logfile", f"{self.workdir}/redis.log"]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.proc.returncode}; see {self.workdir}/redis.log"
                    ) from None
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on port {self.port} within 10 s")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()


@contextmanager
def redis_server(password: str | None = None, persist: bool = False) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "redis-server"], check=True, capture_output=True
        )
    with tempfile.TemporaryDirectory(prefix="surge-redis-") as workdir:
        srv = RedisServer(_free_port(), password, workdir, persist)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop(kill=True)

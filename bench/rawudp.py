"""Raw Python UDP baseline for the loopback benchmark: the ceiling `surge cp` is compared with.

A blaster preads a file and sends it in datagrams of one UDP payload size, optionally sealing
each with AES-128-GCM; a sink in another process receives them (UDP_GRO), opens them and pwrites
them into the destination. There is no loss recovery and no protocol beyond this:

* data datagram: 8-byte big-endian sequence number, then up to ``chunk`` bytes of the file, then
  (with GCM) the 16-byte tag. The sequence number is the associated data and, as 12 bytes, the
  nonce; the file offset is ``seq * chunk``.
* credit datagram (sink -> blaster, same socket pair): the 8-byte cumulative count of data
  datagrams received. The blaster keeps at most ``window`` bytes unacknowledged, so the sink's
  (forced, large) receive buffer never overflows and the blaster runs at the sink's pace.

Each side does the least Python work per datagram that the job allows: one ``preadv``/``pwritev``
per GSO/GRO batch, one AEAD call per datagram, one ``sendmsg`` (UDP_SEGMENT cmsg) per batch for
small datagrams and one ``send`` per 64 KB datagram.

``run_raw`` drives both sides as child processes (``python -m bench.rawudp sink|blast ...``,
each printing one JSON line) and returns what the sink received and how long it took.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["CIPHERS", "RawConfig", "RawError", "RawResult", "run_raw"]

CIPHERS = ("none", "aes128gcm")
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
HEADER = struct.Struct("!Q")
TAG_SIZE = 16
GSO_MAX_PAYLOAD = 8972  # GSO batches for payloads up to a 9000-byte datagram; plain send above
GSO_MAX_BYTES = 65000  # one GSO send stays below the 64 KiB IP limit
MAX_PAYLOAD = 65507
RECV_BUFFER = 1 << 16
SOCKET_BUFFER = 64 << 20  # forced (SO_RCVBUFFORCE/SO_SNDBUFFORCE): root passes net.core.*mem_max
DEFAULT_WINDOW = 16 << 20  # unacknowledged bytes in flight: well inside the receive buffer
CREDIT_STALL = 1.0  # seconds without credit before the blaster writes the window off as lost
SINK_IDLE = 2.0  # seconds without data, once started, before the sink gives up on the rest
READY = "READY"


class RawError(Exception):
    """A side of the raw baseline failed or timed out; the message says which and why."""


@dataclass(frozen=True)
class RawConfig:
    payload: int  # UDP payload bytes per datagram (IP datagram size - 28)
    cipher: str = "none"
    window: int = DEFAULT_WINDOW
    buffer: int = SOCKET_BUFFER

    def __post_init__(self) -> None:
        if self.cipher not in CIPHERS:
            raise ValueError(f"cipher must be one of {CIPHERS}, not {self.cipher!r}")
        if not HEADER.size + TAG_SIZE < self.payload <= MAX_PAYLOAD:
            raise ValueError(f"payload must be in ({HEADER.size + TAG_SIZE}, {MAX_PAYLOAD}]")
        if self.window < self.payload:
            raise ValueError("window must hold at least one datagram")

    @property
    def overhead(self) -> int:
        return HEADER.size + (TAG_SIZE if self.cipher != "none" else 0)

    @property
    def chunk(self) -> int:
        """File bytes carried by one datagram."""
        return self.payload - self.overhead


@dataclass(frozen=True)
class RawResult:
    ok: bool  # every byte arrived
    bytes_total: int
    bytes_received: int  # file bytes the sink wrote
    elapsed: float  # sink: first to last data datagram
    wall: float  # blaster start to sink end, as the driver saw it
    datagrams_sent: int
    stalls: int  # times the blaster wrote its window off after CREDIT_STALL
    auth_failures: int
    sink_max_rss_bytes: int
    gso: bool
    gro: bool


def _nonce(seq: int) -> bytes:
    return seq.to_bytes(12, "big")


def _force_buffer(sock: socket.socket, force: int, plain: int, size: int) -> int:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return sock.getsockopt(socket.SOL_SOCKET, plain)


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- sink ------------------------------------------------------------------------------------


class _Store:
    """The sink's writing side: opens the datagrams of one GRO batch and writes each run of
    consecutive offsets with one pwritev (or, decrypted, one pwrite); counts what it took."""

    def __init__(self, fd: int, chunk: int, aead: AESGCM | None) -> None:
        self.fd, self.chunk, self.aead = fd, chunk, aead
        self.plain = memoryview(bytearray(RECV_BUFFER))  # a decrypted batch
        self.received = self.written = self.auth_failures = 0

    def batch(self, mv: memoryview, nbytes: int, seg: int) -> None:
        """Store the datagrams of `seg` bytes each (the last may be shorter) in mv[:nbytes]."""
        fd, chunk, aead, plain, hdr = self.fd, self.chunk, self.aead, self.plain, HEADER.size
        iov: list[memoryview] = []
        run_start = -1
        run_end = used = 0
        for off in range(0, nbytes, seg):
            end = min(off + seg, nbytes)
            (seq,) = HEADER.unpack_from(mv, off)
            pos = seq * chunk
            if aead is not None:
                dlen = end - off - hdr - TAG_SIZE
                if dlen < 0:
                    self.auth_failures += 1
                    continue
                out = plain[used : used + dlen]
                try:
                    aead.decrypt_into(_nonce(seq), mv[off + hdr : end], mv[off : off + hdr], out)
                except Exception:  # InvalidTag
                    self.auth_failures += 1
                    continue
                used += dlen
            else:
                out = mv[off + hdr : end]
            if pos != run_end and iov:
                self.written += os.pwritev(fd, iov, run_start)
                iov = []
            if not iov:
                run_start = pos
            iov.append(out)
            run_end = pos + len(out)
            self.received += 1
        if iov:
            self.written += os.pwritev(fd, iov, run_start)


def _gro_segment(anc: list[tuple[int, int, bytes]], nbytes: int) -> int:
    """The segment size of a GRO batch (its cmsg), or `nbytes` for a single datagram."""
    for level, kind, data in anc:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 2:
            return int.from_bytes(data[:2], "little") or nbytes
    return nbytes


def sink(dest: str, size: int, cfg: RawConfig, key: bytes | None, *, start_timeout: float = 30.0,
         announce=print) -> dict[str, Any]:  # fmt: skip
    """Receive `size` bytes into `dest`; announces ``READY <port>`` once bound."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    _force_buffer(sock, getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF, cfg.buffer)
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        gro = True
    except OSError:
        gro = False
    aead = AESGCM(key) if cfg.cipher != "none" and key else None
    expected = -(-size // cfg.chunk)
    ack_every = max(1, (cfg.window // 8) // cfg.payload)
    store = _Store(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), cfg.chunk, aead)
    buf = bytearray(RECV_BUFFER)
    mv = memoryview(buf)
    cmsg_space = socket.CMSG_SPACE(4)
    first = last = 0.0
    peer: Any = None
    next_ack = ack_every
    announce(f"{READY} {sock.getsockname()[1]}", flush=True)
    sock.settimeout(start_timeout)
    try:
        while store.received < expected:
            try:
                nbytes, anc, _flags, addr = sock.recvmsg_into([buf], cmsg_space)
            except TimeoutError:
                break
            now = time.monotonic()
            if peer is None:
                peer, first = addr, now
                sock.settimeout(SINK_IDLE)
            last = now
            store.batch(mv, nbytes, _gro_segment(anc, nbytes))
            if store.received >= next_ack:
                next_ack = store.received + ack_every
                sock.sendto(HEADER.pack(store.received), peer)
        if peer is not None:
            for _ in range(3):  # the last credit tells the blaster it is done
                sock.sendto(HEADER.pack(store.received), peer)
    finally:
        os.close(store.fd)
        sock.close()
    return {
        "bytes_received": store.written,
        "datagrams_received": store.received,
        "elapsed": last - first,
        "auth_failures": store.auth_failures,
        "max_rss_bytes": _max_rss(),
        "gro": gro,
    }


# -- blaster ---------------------------------------------------------------------------------


def _gso_works(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
        return True
    except OSError:
        return False


def _send(sock: socket.socket, data: memoryview, segment: int) -> None:
    while True:
        try:
            if segment:
                sock.sendmsg([data], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", segment))])
            else:
                sock.send(data)
            return
        except OSError as exc:
            if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                select.select([], [sock], [], 0.001)
                continue
            if exc.errno == errno.ECONNREFUSED:
                return  # an earlier datagram met a closed port; the sink's count tells
            raise


def _read_credit(sock: socket.socket, credit: bytearray) -> int | None:
    """The highest credit waiting on `sock` (read without blocking), or None if there is none."""
    best = None
    while True:
        try:
            n = sock.recv_into(credit, 0, socket.MSG_DONTWAIT)
        except (BlockingIOError, ConnectionRefusedError):
            return best
        if n >= HEADER.size:
            best = max(best or 0, HEADER.unpack_from(credit)[0])


def _fill(fd: int, mv: memoryview, plain: memoryview, seq: int, k: int, size: int, chunk: int,
          aead: AESGCM | None) -> int:  # fmt: skip
    """Read datagrams seq..seq+k-1 of the file into `mv` back to back (header, data and, with
    GCM, its tag); returns the bytes they take. With GCM the data is read into `plain` (same
    layout) and sealed from there: cryptography >= 51 refuses to encrypt in place."""
    hdr = HEADER.size
    staging = mv if aead is None else plain
    views: list[memoryview] = []
    used = 0
    for j in range(k):
        s = seq + j
        dlen = min(chunk, size - s * chunk)
        HEADER.pack_into(mv, used, s)
        views.append(staging[used + hdr : used + hdr + dlen])
        used += hdr + dlen + (TAG_SIZE if aead is not None else 0)
    os.preadv(fd, views, seq * chunk)
    if aead is not None:
        at = 0
        for j, v in enumerate(views):
            end = at + hdr + len(v)
            aead.encrypt_into(_nonce(seq + j), v, mv[at : at + hdr], mv[at + hdr : end + TAG_SIZE])
            at = end + TAG_SIZE
    return used


def blast(source: str, size: int, host: str, port: int, cfg: RawConfig,
          key: bytes | None) -> dict[str, Any]:  # fmt: skip
    """Send `size` bytes of `source`, paced by the sink's credit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    _force_buffer(sock, getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF, cfg.buffer)
    gso = cfg.payload <= GSO_MAX_PAYLOAD and _gso_works(sock)
    per_batch = max(1, GSO_MAX_BYTES // cfg.payload) if gso else 1
    aead = AESGCM(key) if cfg.cipher != "none" and key else None
    payload = cfg.payload
    total = -(-size // cfg.chunk)
    window = max(2 * per_batch, cfg.window // payload)
    mv = memoryview(bytearray(payload * per_batch))
    plain = memoryview(bytearray(payload * per_batch))
    credit = bytearray(64)
    fd = os.open(source, os.O_RDONLY)
    seq = acked = stalls = 0
    started = time.monotonic()
    last_credit = started
    try:
        while seq < total:
            got = _read_credit(sock, credit)
            if got is not None:
                acked, last_credit = max(acked, got), time.monotonic()
            k = min(per_batch, total - seq)
            if seq + k - acked > window:
                select.select([sock], [], [], 0.05)
                if time.monotonic() - last_credit > CREDIT_STALL:
                    stalls += 1  # lost datagrams never earn credit: write them off
                    acked = seq
                    last_credit = time.monotonic()
                continue
            used = _fill(fd, mv, plain, seq, k, size, cfg.chunk, aead)
            _send(sock, mv[:used], payload if k > 1 else 0)
            seq += k
        # Wait (briefly) for the last credit, so the blaster's time covers delivery.
        deadline = time.monotonic() + SINK_IDLE
        while acked < total and time.monotonic() < deadline:
            select.select([sock], [], [], 0.05)
            acked = max(acked, _read_credit(sock, credit) or 0)
    finally:
        os.close(fd)
        sock.close()
    return {"datagrams_sent": seq, "elapsed": time.monotonic() - started, "stalls": stalls,
            "gso": gso}  # fmt: skip


# -- driver ----------------------------------------------------------------------------------


def _repo_env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _last_json(text: str, who: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RawError(f"the {who} printed no result")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run_raw(
    source: str, dest: str, size: int, cfg: RawConfig, *, timeout: float = 300.0
) -> RawResult:
    """Copy `size` bytes of `source` to `dest` through a blaster and a sink process.
    Raises RawError on a failure or when `timeout` (seconds, both sides) passes."""
    key = AESGCM.generate_key(128) if cfg.cipher != "none" else b""
    common = ["--payload", str(cfg.payload), "--cipher", cfg.cipher, "--window", str(cfg.window),
              "--buffer", str(cfg.buffer), "--key", key.hex(), "--size", str(size)]  # fmt: skip
    env = _repo_env()
    cmd = [sys.executable, "-m", "bench.rawudp"]
    sink_proc = subprocess.Popen([*cmd, "sink", dest, *common], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    blaster: subprocess.Popen[str] | None = None
    try:
        assert sink_proc.stdout is not None
        ready, _, _ = select.select([sink_proc.stdout], [], [], 30.0)
        line = sink_proc.stdout.readline() if ready else ""
        if not line.startswith(READY):
            _stop(sink_proc)
            err = sink_proc.stderr.read() if sink_proc.stderr else ""
            raise RawError(f"the sink did not start: {(line or err).strip()[-500:]}")
        port = int(line.split()[1])
        started = time.monotonic()
        blaster = subprocess.Popen([*cmd, "blast", source, "127.0.0.1", str(port), *common],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        try:
            s_out, s_err = sink_proc.communicate(timeout=timeout)
            wall = time.monotonic() - started
            b_out, b_err = blaster.communicate(timeout=max(5.0, timeout - wall))
        except subprocess.TimeoutExpired:
            raise RawError(f"timed out after {timeout:.0f} s") from None
        if sink_proc.returncode != 0:
            raise RawError(f"the sink failed: {s_err.strip()[-500:]}")
        if blaster.returncode != 0:
            raise RawError(f"the blaster failed: {b_err.strip()[-500:]}")
        got = _last_json(s_out, "sink")
        sent = _last_json(b_out, "blaster")
    finally:
        if blaster is not None:
            _stop(blaster)
        _stop(sink_proc)
    return RawResult(
        ok=got["bytes_received"] == size and got["auth_failures"] == 0,
        bytes_total=size,
        bytes_received=got["bytes_received"],
        elapsed=got["elapsed"],
        wall=wall,
        datagrams_sent=sent["datagrams_sent"],
        stalls=sent["stalls"],
        auth_failures=got["auth_failures"],
        sink_max_rss_bytes=got["max_rss_bytes"],
        gso=sent["gso"],
        gro=got["gro"],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rawudp", description=__doc__.split("\n")[0])
    ap.add_argument("role", choices=("sink", "blast"))
    ap.add_argument("path")
    ap.add_argument("host", nargs="?")
    ap.add_argument("port", nargs="?", type=int)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--payload", type=int, required=True)
    ap.add_argument("--cipher", choices=CIPHERS, default="none")
    ap.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    ap.add_argument("--buffer", type=int, default=SOCKET_BUFFER)
    ap.add_argument("--key", default="")
    a = ap.parse_args(argv)
    cfg = RawConfig(a.payload, a.cipher, a.window, a.buffer)
    key = bytes.fromhex(a.key) or None
    if a.role == "sink":
        out = sink(a.path, a.size, cfg, key)
    else:
        if a.host is None or a.port is None:
            ap.error("blast needs HOST PORT")
        out = blast(a.path, a.size, a.host, a.port, cfg, key)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

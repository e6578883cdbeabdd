"""The socket driver: moves datagrams between a UDP socket and a sans-I/O session.

It keeps one timer (the session's next deadline), batches DATA datagrams of equal size into one
GSO `sendmsg` where the kernel supports it, and splits GRO-coalesced receives back into
datagrams. Files are read and written positionally through the `BlockSource`/`BlockSink`
interfaces, straight from and into the datagram buffers. Per-datagram Python work is kept to
the session call, one pread or pwrite, and one AEAD call.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from common import metrics

from .packets import DATA_HEADER_SIZE
from .receiver import ReceiverSession
from .sender import Block, SenderSession, SessionClosed
from .sockopts import SocketFeatures, gro_segment_size, gso_cmsg

__all__ = ["BlockSink", "BlockSource", "TransferAborted", "run_receiver", "run_sender"]

_MAX_GSO_BYTES = 65000  # one GSO send stays below the 64 KiB IP limit
_MAX_GSO_SEGMENTS = 64
_RECV_BUFFER = 1 << 16
_PROGRESS_EVERY = 0.25
_RING = 8


class BlockSource(Protocol):
    def read_into(self, file_index: int, offset: int, views: list[memoryview]) -> None:
        """Fill `views` in turn with the file's bytes from `offset` on (exactly their total
        length), in one positional read where possible, or raise."""


class BlockSink(Protocol):
    def write(self, file_index: int, offset: int, data: list[memoryview]) -> None:
        """Write the buffers in turn at `offset` of the file, in one positional write."""

    def file_complete(self, file_index: int) -> None: ...


class TransferAborted(Exception):
    """The session ended without completing (peer closed, timeout, local I/O error)."""


Progress = Callable[[dict[str, object]], None]


def _wait(sock: socket.socket, timeout: float, want_write: bool = False) -> bool:
    """Block until readable (or writable) or `timeout`; True when the socket is ready."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | (select.POLLOUT if want_write else 0))
    return bool(poller.poll(max(timeout, 0.0) * 1000.0))


def _metered(meter: metrics.SessionMeter, progress: Progress | None) -> Progress:
    """The progress callback that also advances the session's Prometheus counters (every
    _PROGRESS_EVERY seconds, so a scrape during a long transfer shows how far it got)."""

    def tick(stats: dict[str, object]) -> None:
        meter.update(stats)
        if progress is not None:
            progress(stats)

    return tick


def run_sender(sock: socket.socket, features: SocketFeatures, session: SenderSession,
               source: BlockSource, *, progress: Progress | None = None,
               stop: threading.Event | None = None) -> dict[str, object]:  # fmt: skip
    """Send until the receiver has acknowledged every byte. An unconnected `sock` (a server's
    port) first waits for the receiver's first authenticated datagram and connects to it.
    Every session is accounted in common.metrics, whatever its end."""
    meter = metrics.SessionMeter("send", session.statistics())
    try:
        return _send_loop(sock, features, session, source, _metered(meter, progress), stop)
    finally:
        metrics.record_sender(session.statistics(), ok=session.complete, meter=meter)


def _send_loop(sock: socket.socket, features: SocketFeatures, session: SenderSession,
               source: BlockSource, progress: Progress, stop: threading.Event | None) -> dict[str, object]:  # fmt: skip
    clock = time.monotonic
    try:
        sock.getpeername()
    except OSError:
        _await_peer(sock, session, stop)
    dgram = session.config.datagram_size
    use_gso = features.gso and dgram <= _MAX_GSO_BYTES // 2
    per_batch = max(1, min(_MAX_GSO_SEGMENTS, _MAX_GSO_BYTES // dgram)) if use_gso else 1
    batcher = _Batcher(sock, session, source, per_batch)
    rbuf = bytearray(_RECV_BUFFER)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    last_progress = 0.0
    refused = 0
    while not session.done:
        now = clock()
        if stop is not None and stop.is_set():
            session.cancel(now, "cancelled by the user")
        # 1. Feedback first: it may cancel retransmissions or end the session.
        while True:
            try:
                n = sock.recv_into(rbuf)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                refused += 1
                if refused > 50:
                    raise TransferAborted("the receiver's UDP port refuses datagrams (is it running?)") from None
                break
            session.receive(memoryview(rbuf)[:n], now)
        # 2. Data the pacer allows now.
        batcher.send(session.poll_blocks(now, limit=max(4 * per_batch, 16)))
        for d in session.poll_datagrams(now):
            _send(sock, memoryview(d), 0)
        if now - last_progress >= _PROGRESS_EVERY:
            last_progress = now
            progress(session.statistics())
        if session.done:
            break
        timeout = session.next_deadline(clock()) - clock()
        if timeout > 0:
            poller.poll(min(timeout, 0.05) * 1000.0)
    closed = session.closed
    assert closed is not None
    progress(session.statistics())
    if not session.complete:
        raise TransferAborted(closed.reason)
    return session.statistics()


class _Batcher:
    """Puts the pacer's blocks on the wire: GSO batches of equal-size datagrams (a short one
    ends a batch), each run of consecutive blocks of one file read with one scatter read, one
    clock reading per batch (its datagrams leave together). The datagram and payload slots are
    sliced once: this runs for every datagram."""

    def __init__(self, sock: socket.socket, session: SenderSession, source: BlockSource,
                 per_batch: int) -> None:  # fmt: skip
        dgram = session.config.datagram_size
        self.sock, self.session, self.source = sock, session, source
        self.per_batch, self.dgram, self.full = per_batch, dgram, session.block_size
        self.view = memoryview(bytearray(dgram * per_batch))
        # File bytes are read straight into the datagrams only with `-c none`; a cipher seals
        # them from a buffer of the same layout into the datagrams (it may not work in place).
        self.in_place = session.seals_in_place
        staging = self.view if self.in_place else memoryview(bytearray(dgram * per_batch))
        self.slots = [self.view[j * dgram : (j + 1) * dgram] for j in range(per_batch)]
        at = DATA_HEADER_SIZE
        self.payloads = [staging[j * dgram + at : j * dgram + at + self.full] for j in range(per_batch)]

    def send(self, blocks: list[Block]) -> None:
        full, per_batch = self.full, self.per_batch
        i, count = 0, len(blocks)
        while i < count:
            end = i + 1
            while end < count and end - i < per_batch and blocks[end - 1].length == full:
                end += 1
            self._send_batch(blocks[i:end])
            i = end

    def _send_batch(self, batch: list[Block]) -> None:
        full, payloads = self.full, self.payloads
        views = [payloads[j] if b.length == full else payloads[j][: b.length] for j, b in enumerate(batch)]
        j, n = 0, len(batch)
        while j < n:  # runs of consecutive blocks of one file: one read each
            first = batch[j]
            k, nxt = j + 1, first.offset + first.length
            while k < n and batch[k].file_index == first.file_index and batch[k].offset == nxt:
                nxt += batch[k].length
                k += 1
            self.source.read_into(first.file_index, first.offset, views[j:k])
            j = k
        used = self.session.seal_batch(self.slots, batch, time.monotonic(), None if self.in_place else views)
        used += (n - 1) * self.dgram
        _send(self.sock, self.view[:used], self.dgram if n > 1 else 0)


def _await_peer(sock: socket.socket, session: SenderSession, stop: threading.Event | None) -> None:
    """Connect to whoever sends the first datagram that authenticates for this session."""
    buf = bytearray(_RECV_BUFFER)
    deadline = time.monotonic() + session.config.idle_timeout
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        if not _wait(sock, 0.2):
            continue
        try:
            n, addr = sock.recvfrom_into(buf)
        except (BlockingIOError, ConnectionRefusedError):
            continue
        drops = sum(session.drops.values())
        session.receive(memoryview(buf)[:n], time.monotonic())
        if sum(session.drops.values()) == drops:
            sock.connect(addr)
            return
    raise TransferAborted("the receiver never reached the UDP port (is a firewall in the way?)")


def _send(sock: socket.socket, data: memoryview, gso_segment: int) -> None:
    while True:
        try:
            if gso_segment:
                sock.sendmsg([data], gso_cmsg(gso_segment))
            else:
                sock.send(data)
            return
        except BlockingIOError:
            _wait(sock, 0.01, want_write=True)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                _wait(sock, 0.001, want_write=True)
                continue
            if exc.errno == errno.ECONNREFUSED:
                return  # ICMP from an earlier datagram; the session's timeout decides
            raise


def run_receiver(sock: socket.socket, session: ReceiverSession, sink: BlockSink, *,
                 progress: Progress | None = None, stop: threading.Event | None = None,
                 linger: float = 2.0, peer: Any = None) -> dict[str, object]:  # fmt: skip
    """Receive until every byte has arrived (then linger briefly to re-acknowledge, in case the
    final acknowledgement was lost) or the session fails. Without `peer`, feedback goes to the
    address of the first authenticated datagram. Every session is accounted in common.metrics
    (data a resumed session already had is not counted as received)."""
    meter = metrics.SessionMeter("recv", session.statistics())
    try:
        return _receive_loop(sock, session, sink, _metered(meter, progress), stop, linger, peer)
    finally:
        metrics.record_receiver(session.statistics(), ok=session.complete, meter=meter)


def _receive_loop(sock: socket.socket, session: ReceiverSession, sink: BlockSink, progress: Progress,
                  stop: threading.Event | None, linger: float, peer: Any) -> dict[str, object]:  # fmt: skip
    clock = time.monotonic
    reader = _Reader(sock, session, sink, peer)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    last_progress = 0.0
    complete_at: float | None = None
    for ev in session.events():
        sink.file_complete(ev.file_index)
    while not session.done:
        now = clock()
        if stop is not None and stop.is_set():
            session.cancel(now, "cancelled on the receiving side")
        now = reader.read() or now
        # Polled even before anyone is heard from (what it says then goes nowhere): it keeps the
        # session's clock, so an idle timeout ends a session whose sender never comes.
        for d in session.poll_datagrams(now):
            if reader.peer is None:
                break
            try:
                sock.sendto(d, reader.peer)
            except (BlockingIOError, ConnectionRefusedError):
                pass
        if session.complete:
            complete_at = complete_at or now
            if now - complete_at > linger:
                break
        if now - last_progress >= _PROGRESS_EVERY:
            last_progress = now
            progress(session.statistics())
        timeout = session.next_deadline(clock()) - clock()
        if timeout > 0:
            poller.poll(min(timeout, 0.05) * 1000.0)
    progress(session.statistics())
    if not session.complete:
        raise TransferAborted(session.closed.reason if session.closed else "incomplete")
    return session.statistics()


class _Reader:
    """Reads what is waiting on the socket into the session and the file.

    A ring of receive buffers and one of plaintext buffers beside them (a cipher may not
    decrypt in place): payloads are written in runs, so the blocks of several datagrams reach
    the file in one gather write. With `-c none` payloads stay in the receive buffers."""

    def __init__(self, sock: socket.socket, session: ReceiverSession, sink: BlockSink, peer: Any) -> None:
        self.sock, self.session, self.sink, self.peer = sock, session, sink, peer
        self.ring = [memoryview(bytearray(_RECV_BUFFER)) for _ in range(_RING)]
        self.plain = [memoryview(bytearray(_RECV_BUFFER)) for _ in range(_RING)]
        self.cmsg_space = socket.CMSG_SPACE(4)

    def read(self, max_reads: int = 256) -> float | None:
        """Read until the socket is empty, a feedback is due or `max_reads`; returns the clock
        of the last read (None if nothing came)."""
        session, recv, now = self.session, self.sock.recvmsg_into, None
        pending: list[tuple[int, int, memoryview]] = []
        for turn in range(max_reads):
            slot = turn % _RING
            if slot == 0 and turn:
                if pending:
                    self._flush(pending)
                if session.feedback_due:
                    break  # the sender waits to hear from us before it sends much more
            try:
                nbytes, anc, _flags, addr = recv([self.ring[slot]], self.cmsg_space)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                continue
            now = time.monotonic()  # per read: a stale clock would corrupt the delay measurement
            seg = gro_segment_size(anc, nbytes)
            if addr == self.peer:
                pending += session.receive_coalesced(self.ring[slot], nbytes, seg, now, self.plain[slot])
            else:
                self._first_from(addr, self.ring[slot], self.plain[slot], nbytes, seg, now, pending)
        if pending:
            self._flush(pending)
        return now

    def _first_from(self, addr: Any, buf: memoryview, out: memoryview, nbytes: int, seg: int,
                    now: float, pending: list[tuple[int, int, memoryview]]) -> None:  # fmt: skip
        """Datagrams from an address not answered yet, one by one: the first that authenticates
        makes it the address feedback goes to."""
        session = self.session
        for off in range(0, nbytes, seg):
            end = min(off + seg, nbytes)
            drops = sum(session.drops.values())
            got = session.receive(buf[off:end], now, out[off:end])
            if sum(session.drops.values()) == drops:
                self.peer = addr
            if got is not None:
                pending.append(got)

    def _flush(self, pending: list[tuple[int, int, memoryview]]) -> None:
        self.peer = _flush(self.sock, self.session, self.sink, pending, self.peer)


def _flush(sock: socket.socket, session: ReceiverSession, sink: BlockSink,
           pending: list[tuple[int, int, memoryview]], peer: Any) -> Any:  # fmt: skip
    """Write the received blocks, runs of contiguous blocks of one file in one gather write,
    then report the files they completed."""
    i = 0
    try:
        while i < len(pending):
            index, offset, payload = pending[i]
            views = [payload]
            end = offset + len(payload)
            i += 1
            while i < len(pending) and pending[i][0] == index and pending[i][1] == end:
                views.append(pending[i][2])
                end += len(pending[i][2])
                i += 1
            sink.write(index, offset, views)
    except OSError as exc:
        _fail(sock, session, peer, f"write failed: {exc.strerror or exc}")
    pending.clear()
    for ev in session.events():
        sink.file_complete(ev.file_index)
    return peer


def _fail(sock: socket.socket, session: ReceiverSession, peer: Any, reason: str) -> None:
    """A local error ends the session: tell the sender (best effort) and abort."""
    session.cancel(time.monotonic(), reason[:200], code=3)
    if peer is not None:
        for d in session.poll_datagrams(time.monotonic()):
            try:
                sock.sendto(d, peer)
            except OSError:
                pass
    raise TransferAborted(reason)


__all__ += ["SessionClosed"]

"""Framing of control messages: a 4-byte big-endian length, then a UTF-8 JSON object with a
"type" field. Bounded: a frame larger than `MAX_FRAME` is a protocol error, never an allocation.
The decoder is sans-I/O (feed bytes, get messages); `read_message`/`write_message` are the
blocking helpers for pipes and SSH channels used as files.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

__all__ = ["MAX_FRAME", "FrameDecoder", "ProtocolError", "encode_message", "read_message", "write_message"]

MAX_FRAME = 16 << 20
_LEN = struct.Struct("!I")

Message = dict[str, Any]


class ProtocolError(Exception):
    """The peer sent something that is not a valid control message."""


def encode_message(msg: Message) -> bytes:
    if not isinstance(msg.get("type"), str):
        raise ValueError("a control message needs a string 'type'")
    body = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ValueError(f"control message of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _LEN.pack(len(body)) + body


def _decode_body(body: bytes) -> Message:
    try:
        msg = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"malformed control message: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("control message is not an object with a 'type'")
    return msg


class FrameDecoder:
    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self._buf)
            if n > self._max:
                raise ProtocolError(f"control frame of {n} bytes exceeds the {self._max}-byte limit")
            if len(self._buf) < _LEN.size + n:
                break
            body = bytes(self._buf[_LEN.size : _LEN.size + n])
            del self._buf[: _LEN.size + n]
            out.append(_decode_body(body))
        return out


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    while n:
        data = stream.read(n)
        if not data:
            raise EOFError("control channel closed")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def read_message(stream: BinaryIO, max_frame: int = MAX_FRAME) -> Message:
    (n,) = _LEN.unpack(_read_exact(stream, _LEN.size))
    if n > max_frame:
        raise ProtocolError(f"control frame of {n} bytes exceeds the {max_frame}-byte limit")
    return _decode_body(_read_exact(stream, n))


def write_message(stream: BinaryIO, msg: Message) -> None:
    stream.write(encode_message(msg))
    stream.flush()

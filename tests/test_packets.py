"""Wire format: round trip, truncation and garbage for every message, and the -X limit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.transport.codec import Opener, Sealer
from common.transport.config import SessionConfig
from common.transport.crypto import derive_protection
from common.transport.packets import (
    DATA_HEADER,
    DATA_HEADER_SIZE,
    VERSION,
    Close,
    CloseCode,
    DataHeader,
    DecodeError,
    Feedback,
    Header,
    PacketType,
    Status,
)
from common.transport.ratecontrol import RateConfig

u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFF_FFFF)
u64 = st.integers(min_value=0, max_value=0xFFFF_FFFF_FFFF_FFFF)

headers = st.builds(Header, st.sampled_from(PacketType), u16, u64, u64)
u8 = st.integers(min_value=0, max_value=0xFF)
data_headers = st.builds(DataHeader, u8, u32, u64, u64, u32)
feedbacks = st.builds(
    Feedback, u32, u32, u64, u64, u64, u32, u32, u64,
    st.lists(st.tuples(u64, u32), max_size=40).map(tuple),
)  # fmt: skip
statuses = st.builds(Status, u64, u32, u64)
# Reasons that fit the 200-byte limit (round trip must be exact), any code.
short_reasons = st.text(max_size=200).filter(lambda r: len(r.encode()) <= 200)
closes = st.builds(Close, u16, short_reasons)

# (parse, strategy of messages, encode) for every message type
Message = tuple[Callable[[bytes | memoryview], object], st.SearchStrategy[object]]
MESSAGES: dict[str, Message] = {
    "header": (Header.parse, headers),
    "data_header": (DataHeader.parse, data_headers),
    "feedback": (Feedback.parse, feedbacks),
    "status": (Status.parse, statuses),
    "close": (Close.parse, closes),
}
PARSERS: list[Callable[[bytes | memoryview], object]] = [
    Header.parse,
    DataHeader.parse,
    Feedback.parse,
    Status.parse,
    Close.parse,
]


# -- round trip -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MESSAGES)
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    parse, strategy = MESSAGES[name]
    msg = data.draw(strategy)
    encoded = msg.encode()  # type: ignore[attr-defined]
    assert parse(encoded) == msg
    assert parse(memoryview(encoded)) == msg  # the hot path parses memoryviews


@given(data_headers)
def test_data_header_is_the_hot_paths_struct(d: DataHeader) -> None:
    """The readable twin and the struct the hot path packs agree field by field, in 27 bytes:
    version and type where every datagram has them, then the DATA fields."""
    packed = DATA_HEADER.pack(VERSION, PacketType.DATA, d.flags, d.session_low, d.packet_number,
                              d.stream_offset, d.send_time_us)  # fmt: skip
    assert packed == d.encode()
    assert len(packed) == DATA_HEADER_SIZE == 27
    assert (packed[0], packed[1]) == (VERSION, PacketType.DATA)


def test_a_data_header_of_another_version_or_type_is_refused() -> None:
    good = DataHeader(1, 2, 3, 4, 5).encode()
    with pytest.raises(DecodeError):
        DataHeader.parse(bytes([VERSION - 1]) + good[1:])
    with pytest.raises(DecodeError):
        DataHeader.parse(good[:1] + bytes([PacketType.STATUS]) + good[2:])


@given(u16, st.text(min_size=150, max_size=400))
def test_close_reason_is_truncated_to_200_bytes_on_a_character_boundary(
    code: int, reason: str
) -> None:
    encoded = Close(code, reason).encode()
    back = Close.parse(encoded)
    assert back.code == code
    assert len(back.reason.encode()) <= 200
    assert reason.startswith(
        back.reason
    )  # a prefix: no replacement character from a split code point


def test_close_code_values() -> None:
    for code in CloseCode:
        assert Close.parse(Close(code, "why").encode()) == Close(code, "why")


# -- header checks ----------------------------------------------------------------------------
def test_header_rejects_other_versions() -> None:
    raw = bytearray(Header(PacketType.DATA, 0, 1, 2).encode())
    for version in (0, VERSION + 1, 255):
        raw[0] = version
        with pytest.raises(DecodeError, match="version"):
            Header.parse(bytes(raw))


def test_header_rejects_unknown_types() -> None:
    raw = bytearray(Header(PacketType.DATA, 0, 1, 2).encode())
    known = {int(t) for t in PacketType}
    for ptype in range(256):
        raw[1] = ptype
        if ptype in known:
            assert Header.parse(bytes(raw)).type == ptype
        else:
            with pytest.raises(DecodeError, match="type"):
                Header.parse(bytes(raw))


# -- truncation -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MESSAGES)
@given(data=st.data())
@settings(max_examples=50)
def test_every_proper_prefix_raises_decode_error(name: str, data: st.DataObject) -> None:
    parse, strategy = MESSAGES[name]
    encoded = data.draw(strategy).encode()  # type: ignore[attr-defined]
    for n in range(len(encoded)):
        with pytest.raises(DecodeError):
            parse(encoded[:n])


@pytest.mark.parametrize(
    "msg",
    [
        Feedback(1, 2, 3, 4, 5, 6, 7, 8, ((9, 10), (11, 12))),
        Feedback(0, 0, 0, 0, 0, 0, 0, 0),
        Status(1, 2, 3),
        Close(CloseCode.IO_ERROR, "disk full"),
        Close(CloseCode.DONE),
    ],
    ids=repr,
)
def test_trailing_bytes_are_rejected(msg: Feedback | Status | Close) -> None:
    # Bodies are self-delimiting: a longer body is as malformed as a shorter one.
    parse = type(msg).parse
    encoded = msg.encode()
    encoded_long = encoded + (b"x" if isinstance(msg, Close) else b"\0" * 12)
    with pytest.raises(DecodeError):
        parse(encoded_long)


# -- garbage ----------------------------------------------------------------------------------
@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__qualname__)
@given(st.binary(max_size=300))
def test_garbage_raises_only_decode_error(parse: Callable[[bytes], object], raw: bytes) -> None:
    try:
        parse(raw)
    except DecodeError:
        pass  # anything else propagates and fails the test


@pytest.mark.parametrize("name", MESSAGES)
@given(data=st.data())
@settings(max_examples=50)
def test_mutated_messages_raise_only_decode_error(name: str, data: st.DataObject) -> None:
    parse, strategy = MESSAGES[name]
    raw = bytearray(data.draw(strategy).encode())  # type: ignore[attr-defined]
    if raw:
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    raw += data.draw(st.binary(max_size=30))
    try:
        parse(bytes(raw))
    except DecodeError:
        pass


# -- -X: retransmission request size ----------------------------------------------------------
def _sealed_feedback(cipher: str, count: int) -> bytes:
    big = 0xFFFF_FFFF_FFFF_FFFF
    fb = Feedback(0xFFFF_FFFF, 0xFFFF_FFFF, big, big, big, 0xFFFF_FFFF, 0xFFFF_FFFF, big,
                  tuple((big - i, 0xFFFF_FFFF) for i in range(count)))  # fmt: skip
    sealer = Sealer(derive_protection(cipher, bytes(32), "feedback"), 1)
    return sealer.seal(PacketType.FEEDBACK, fb.encode())


@pytest.mark.parametrize("rexmsg_size", [1440, 1439, 1000, 512, 300, 200, 150, 110, 99, 98])
@pytest.mark.parametrize("cipher", ["aes256gcm", "aes128cfb", "none"])
def test_feedback_with_max_requests_fits_rexmsg_size(rexmsg_size: int, cipher: str) -> None:
    n = Feedback.max_requests(rexmsg_size)
    assert n >= 1
    datagram = _sealed_feedback(cipher, n)
    assert len(datagram) <= rexmsg_size
    opener = Opener(derive_protection(cipher, bytes(32), "feedback"), 1)
    _, _, body = opener.open(memoryview(datagram))
    assert len(Feedback.parse(body).requests) == n
    if cipher != "none":  # with a tag the limit is tight: one more range would not fit
        assert len(_sealed_feedback(cipher, n + 1)) > rexmsg_size


def test_max_requests_at_the_ascp_maximum() -> None:
    # 20-byte header, 50-byte feedback body, 16-byte tag, 12 bytes per range.
    assert Feedback.max_requests(1440) == (1440 - 20 - 50 - 16) // 12 == 112


@pytest.mark.parametrize("rexmsg_size", [56, 64, 86, 97])
def test_small_rexmsg_size_is_refused_or_respected(rexmsg_size: int) -> None:
    try:
        SessionConfig(session_id=1, cipher="aes128gcm", secret=bytes(32),
                      rate=RateConfig(target=1e6), rexmsg_size=rexmsg_size)  # fmt: skip
    except ValueError:
        return  # refusing a -X that cannot hold a request is fine
    assert len(_sealed_feedback("aes128gcm", Feedback.max_requests(rexmsg_size))) <= rexmsg_size

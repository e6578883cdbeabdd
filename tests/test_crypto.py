"""Per-datagram protection and the codec: round trip, tamper, replay, foreign and wrong keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from common.transport.codec import DropReason, Opener, Sealer
from common.transport.crypto import ReplayWindow, derive_protection
from common.transport.packets import (
    DATA_HEADER,
    DATA_HEADER_SIZE,
    HEADER,
    HEADER_SIZE,
    DecodeError,
    Feedback,
    PacketType,
    Status,
)

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
SID = 0x1234_5678_9ABC_DEF0
AEAD = [f"aes{bits}{mode}" for bits in (128, 192, 256) for mode in ("gcm", "cfb")]
CIPHERS = [*AEAD, "none"]
MAX_PAYLOAD = 1472 - DATA_HEADER_SIZE - 16


def pair(cipher: str, label: str = "data", *, secret: bytes = SECRET, sid: int = SID,
         window: int = 1 << 16) -> tuple[Sealer, Opener]:  # fmt: skip
    return (Sealer(derive_protection(cipher, secret, label), sid),
            Opener(derive_protection(cipher, secret, label), sid, window))  # fmt: skip


def seal_data(sealer: Sealer, payload: bytes, offset: int = 4096, send_time: int = 777,
              flags: int = 0, in_place: bool = False) -> bytes:  # fmt: skip
    """A DATA datagram, its payload passed apart (as the driver does for a cipher) or already
    placed in the datagram buffer (as it does for `none`)."""
    buf = bytearray(DATA_HEADER_SIZE + len(payload) + sealer.protection.overhead)
    plain = None
    if in_place:
        buf[DATA_HEADER_SIZE : DATA_HEADER_SIZE + len(payload)] = payload
    else:
        plain = memoryview(bytearray(payload))
    n = sealer.seal_data_into(memoryview(buf), offset, send_time, len(payload), flags, plain)
    assert n == len(buf)
    return bytes(buf[:n])


def sample_feedback() -> bytes:
    return Feedback(1, 2, 3, 4, 5, 6, 7, 8, ((100, 1400), (5000, 2800))).encode()


def open_data(opener: Opener, datagram: bytes, into: bool) -> tuple[int, int, int, memoryview]:
    """Open a DATA datagram held in a receive buffer, its payload decrypted into a buffer of the
    caller's (as the driver does) or into the opener's scratch."""
    if into:
        return opener.open_data(
            memoryview(bytearray(datagram)), memoryview(bytearray(len(datagram)))
        )
    return opener.open_data(memoryview(datagram))


def reason(open_: Callable[..., object], datagram: bytes, into: bool = False) -> str:
    """The drop reason `open_` gives for `datagram` (it must raise DecodeError)."""
    with pytest.raises(DecodeError) as info:
        if into:
            open_(memoryview(bytearray(datagram)), memoryview(bytearray(len(datagram) + 1)))
        else:
            open_(memoryview(datagram))
    return str(info.value)


# -- derivation -------------------------------------------------------------------------------
@pytest.mark.parametrize("cipher", CIPHERS)
def test_protection_names_and_overhead(cipher: str) -> None:
    p = derive_protection(cipher, SECRET, "data")
    assert p.name == cipher
    assert p.overhead == (0 if cipher == "none" else 16)


@pytest.mark.parametrize("cipher", ["aes128", "aes512gcm", "aes128ctr", "rot13"])
def test_unknown_cipher_is_refused(cipher: str) -> None:
    with pytest.raises(ValueError):
        derive_protection(cipher, SECRET, "data")


@pytest.mark.parametrize("cipher", AEAD)
def test_short_secret_is_refused(cipher: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        derive_protection(cipher, bytes(31), "data")


# -- round trip -------------------------------------------------------------------------------
@pytest.mark.parametrize("into", [False, True], ids=["scratch", "buffer"])
@pytest.mark.parametrize("in_place", [False, True], ids=["apart", "in-place"])
@pytest.mark.parametrize("cipher", CIPHERS)
@given(payload=st.binary(max_size=MAX_PAYLOAD), flags=st.sampled_from([0, 1]),
       offset=st.integers(0, 2**64 - 1), send_time=st.integers(0, 2**32 - 1))  # fmt: skip
@settings(max_examples=25)
def test_data_round_trip(into: bool, in_place: bool, cipher: str, payload: bytes, flags: int,
                         offset: int, send_time: int) -> None:  # fmt: skip
    sealer, opener = pair(cipher)
    datagram = seal_data(sealer, payload, offset, send_time, flags, in_place)
    assert len(datagram) == DATA_HEADER_SIZE + len(payload) + sealer.protection.overhead
    got_flags, got_offset, got_time, got_payload = open_data(opener, datagram, into)
    assert (got_flags, got_offset, got_time) == (flags, offset, send_time)
    assert bytes(got_payload) == payload


@pytest.mark.parametrize("cipher", CIPHERS)
def test_plaintext_and_ciphertext_never_share_memory(cipher: str) -> None:
    """cryptography >= 51 refuses overlapping buffers: sealing from a separate plaintext gives
    the datagram that sealing in place gives, and opening into the caller's buffer leaves the
    received datagram as it was (the receiver may not decrypt in place)."""
    payload = bytes(range(256)) * 4
    apart = seal_data(pair(cipher)[0], payload)
    assert apart == seal_data(pair(cipher)[0], payload, in_place=True)
    received = bytearray(apart)
    out = memoryview(bytearray(len(received)))
    got = pair(cipher)[1].open_data(memoryview(received), out)[3]
    assert bytes(got) == payload and bytes(received) == apart
    if cipher != "none":
        assert got.obj is out.obj  # the payload lives in the caller's buffer


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("ptype", [PacketType.FEEDBACK, PacketType.STATUS, PacketType.CLOSE])
@given(body=st.binary(max_size=1400), flags=st.integers(0, 0xFFFF))
@settings(max_examples=20)
def test_control_round_trip(cipher: str, ptype: PacketType, body: bytes, flags: int) -> None:
    sealer, opener = pair(cipher, "feedback")
    datagram = sealer.seal(ptype, body, flags)
    assert len(datagram) == HEADER_SIZE + len(body) + sealer.protection.overhead
    kind, got_flags, got_body = opener.open(memoryview(datagram))
    assert (kind, got_flags, bytes(got_body)) == (ptype, flags, body)


@pytest.mark.parametrize("cipher", AEAD)
def test_payload_is_encrypted(cipher: str) -> None:
    sealer, _ = pair(cipher)
    payload = b"the quick brown fox jumps over the lazy dog " * 20
    datagram = seal_data(sealer, payload)
    assert payload[:32] not in datagram
    body = Status(123456789, 42, 987654321).encode()
    sealer2, _ = pair(cipher, "feedback")
    assert body not in sealer2.seal(PacketType.STATUS, body)


@pytest.mark.parametrize("cipher", AEAD)
def test_same_plaintext_never_gives_the_same_ciphertext(cipher: str) -> None:
    sealer, _ = pair(cipher)
    payload = bytes(1000)
    a = seal_data(sealer, payload)
    b = seal_data(sealer, payload)
    assert a[DATA_HEADER_SIZE:] != b[DATA_HEADER_SIZE:]


@pytest.mark.parametrize("cipher", CIPHERS)
def test_packet_numbers_strictly_increase_across_data_and_control(cipher: str) -> None:
    sealer, _ = pair(cipher)
    numbers = []
    for i in range(300):
        if i % 3 == 2:
            datagram = sealer.seal(PacketType.STATUS, Status(i, 0, 0).encode())
            numbers.append(HEADER.unpack_from(datagram)[4])
        else:
            datagram = seal_data(sealer, bytes([i % 256]) * (i % 50))
            numbers.append(DATA_HEADER.unpack_from(datagram)[4])
    assert numbers == sorted(set(numbers))  # strictly increasing: every nonce used once
    assert numbers[0] == 0


# -- tampering --------------------------------------------------------------------------------
def _flip_all_bits(
    datagram: bytes, opener: Opener, data: bool, into: bool = False
) -> dict[str, int]:
    """Open every single-bit corruption of `datagram`; the drop reason of each, counted."""
    reasons: dict[str, int] = {}
    for bit in range(len(datagram) * 8):
        buf = bytearray(datagram)
        buf[bit // 8] ^= 1 << (bit % 8)
        why = reason(opener.open_data if data else opener.open, bytes(buf), into)
        where = bit // 8
        session = range(3, 7) if data else range(4, 12)  # DATA carries the id's low 32 bits
        if where == 0:
            assert why == DropReason.VERSION
        elif where in session:
            assert why == DropReason.FOREIGN
        elif where == 1 and not data:
            # the type byte of a control datagram is checked before the tag
            assert why in (DropReason.MALFORMED, DropReason.AUTH)
        else:
            assert why == DropReason.AUTH, f"bit {bit} (byte {where}): {why}"
        reasons[why] = reasons.get(why, 0) + 1
    return reasons


@pytest.mark.parametrize("into", [False, True], ids=["scratch", "buffer"])
@pytest.mark.parametrize("cipher", AEAD)
def test_any_bit_flip_in_data_is_rejected(cipher: str, into: bool) -> None:
    """Every flipped bit is dropped: the header is associated data, so apart from the version
    byte and the session id (checked first, with their own drop reasons) a flip anywhere, the
    type, flags, packet number, stream offset and send time included, fails the tag."""
    sealer, opener = pair(cipher)
    datagram = seal_data(sealer, bytes(range(256)) * 2, flags=1)
    reasons = _flip_all_bits(datagram, opener, data=True, into=into)
    assert reasons[DropReason.AUTH] == (len(datagram) - 5) * 8
    # the corruptions neither consumed the packet number nor poisoned the replay window
    assert bytes(open_data(opener, datagram, into)[3]) == bytes(range(256)) * 2


@pytest.mark.parametrize("cipher", AEAD)
def test_any_bit_flip_in_feedback_is_rejected(cipher: str) -> None:
    sealer, opener = pair(cipher, "feedback")
    datagram = sealer.seal(PacketType.FEEDBACK, sample_feedback())
    _flip_all_bits(datagram, opener, data=False)
    _, _, body = opener.open(memoryview(datagram))
    assert bytes(body) == sample_feedback()


@pytest.mark.parametrize("cipher", AEAD)
def test_truncated_or_extended_datagrams_are_rejected(cipher: str) -> None:
    sealer, opener = pair(cipher)
    datagram = seal_data(sealer, bytes(300))
    for n in range(len(datagram)):
        reason(opener.open_data, datagram[:n])
        reason(opener.open_data, datagram[:n], into=True)
    reason(opener.open_data, datagram + b"\0")
    reason(opener.open_data, datagram + b"\0", into=True)
    fsealer, fopener = pair(cipher, "feedback")
    control = fsealer.seal(PacketType.FEEDBACK, sample_feedback())
    for n in range(len(control)):
        reason(fopener.open, control[:n])


@pytest.mark.parametrize("cipher", CIPHERS)
@given(garbage=st.binary(max_size=200))
@settings(max_examples=50)
def test_garbage_raises_only_decode_error(cipher: str, garbage: bytes) -> None:
    _, opener = pair(cipher)
    for call in (opener.open_data, opener.open):
        try:
            call(memoryview(garbage))
        except DecodeError as exc:
            assert str(exc) in DropReason.ALL


# -- replay, foreign session, wrong key -------------------------------------------------------
@pytest.mark.parametrize("cipher", CIPHERS)
def test_replayed_datagram_is_dropped(cipher: str) -> None:
    sealer, opener = pair(cipher)
    first = seal_data(sealer, b"a" * 100)
    second = seal_data(sealer, b"b" * 100)
    opener.open_data(memoryview(second))
    opener.open_data(memoryview(first))  # out of order is fine
    assert reason(opener.open_data, first) == DropReason.REPLAY
    assert reason(opener.open_data, second) == DropReason.REPLAY
    fsealer, fopener = pair(cipher, "feedback")
    control = fsealer.seal(PacketType.FEEDBACK, sample_feedback())
    fopener.open(memoryview(control))
    assert reason(fopener.open, control) == DropReason.REPLAY


@pytest.mark.parametrize("cipher", CIPHERS)
def test_foreign_session_is_dropped(cipher: str) -> None:
    sealer, _ = pair(cipher)
    _, opener = pair(cipher, sid=SID + 1)
    datagram = seal_data(sealer, b"x" * 64)
    assert reason(opener.open_data, datagram) == DropReason.FOREIGN
    control = sealer.seal(PacketType.STATUS, Status(1, 2, 3).encode())
    assert reason(opener.open, control) == DropReason.FOREIGN


@pytest.mark.parametrize("cipher", AEAD)
def test_session_sharing_the_low_half_of_the_id_fails_authentication(cipher: str) -> None:
    """DATA carries only the session id's low 32 bits: another session whose id shares them
    passes that check, but its datagrams are sealed under its own secret and are dropped."""
    _, opener = pair(cipher)
    other, _ = pair(cipher, secret=OTHER_SECRET, sid=SID + (7 << 32))
    assert reason(opener.open_data, seal_data(other, b"x" * 64)) == DropReason.AUTH


@pytest.mark.parametrize("cipher", AEAD)
@pytest.mark.parametrize(
    "other",
    [
        {"secret": OTHER_SECRET},  # another session's key
        {"label": "feedback"},  # the other direction's key
    ],
    ids=["other_secret", "other_direction"],
)
def test_wrong_key_is_dropped(cipher: str, other: dict[str, object]) -> None:
    sealer, opener = pair(cipher)
    label = str(other.get("label", "data"))
    secret = other.get("secret", SECRET)
    assert isinstance(secret, bytes)
    forger = Sealer(derive_protection(cipher, secret, label), SID)
    forged = seal_data(forger, b"evil" * 100)
    assert reason(opener.open_data, forged) == DropReason.AUTH
    forged_ctl = forger.seal(PacketType.FEEDBACK, sample_feedback())
    assert reason(opener.open, forged_ctl) == DropReason.AUTH
    # nothing forged reached the replay window: the real datagram 0 still opens
    genuine = seal_data(sealer, b"good" * 100)
    assert bytes(opener.open_data(memoryview(genuine))[3]) == b"good" * 100


@pytest.mark.parametrize(("sealed_with", "opened_with"),
                         [("aes128gcm", "aes256gcm"), ("aes256gcm", "aes256cfb"), ("aes128cfb", "aes192cfb")])  # fmt: skip
def test_other_cipher_is_dropped(sealed_with: str, opened_with: str) -> None:
    sealer, _ = pair(sealed_with)
    _, opener = pair(opened_with)
    datagram = seal_data(sealer, b"z" * 200)
    assert reason(opener.open_data, datagram) == DropReason.AUTH


@pytest.mark.parametrize("cipher", AEAD)
def test_forged_far_future_packet_number_does_not_poison_the_window(cipher: str) -> None:
    sealer, opener = pair(cipher, window=64)
    forger = Sealer(derive_protection(cipher, OTHER_SECRET, "data"), SID)
    forger.packet_number = 10**9
    forged = seal_data(forger, b"f" * 50)
    assert reason(opener.open_data, forged) == DropReason.AUTH
    assert opener.replay.highest == -1
    opener.open_data(memoryview(seal_data(sealer, b"g" * 50)))  # packet number 0 still accepted


def test_too_old_datagram_is_dropped_as_replay() -> None:
    sealer, opener = pair("aes128gcm", window=16)
    old = seal_data(sealer, b"o" * 10)
    for _ in range(16):
        opener.open_data(memoryview(seal_data(sealer, b"n" * 10)))
    assert reason(opener.open_data, old) == DropReason.REPLAY


# -- ReplayWindow -----------------------------------------------------------------------------
def test_replay_window_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(1000)
    ReplayWindow(1024)


def test_replay_window_examples() -> None:
    w = ReplayWindow(8)
    assert w.check_and_mark(5)
    assert not w.check_and_mark(5)  # duplicate
    assert w.check_and_mark(2)  # out of order, within the window
    assert w.check_and_mark(0)
    assert not w.check_and_mark(2)
    assert w.check_and_mark(12)  # jump ahead: highest 12, window (4, 12]
    assert not w.check_and_mark(4)  # 12 - 8: too old
    assert w.check_and_mark(6)  # 6 > 4: still acceptable, never seen
    assert not w.check_and_mark(5)  # seen, and its slot was not reused
    assert w.check_and_mark(13)
    assert not w.check_and_mark(1 << 62)  # beyond the packet number limit
    assert w.highest == 13


class ReplayModel(RuleBasedStateMachine):
    """The window against a set of everything seen and the rule 'new and not too old'."""

    SIZE = 16

    def __init__(self) -> None:
        super().__init__()
        self.window = ReplayWindow(self.SIZE)
        self.seen: set[int] = set()
        self.highest = -1

    def _check(self, pn: int) -> None:
        fresh = pn not in self.seen and pn > self.highest - self.SIZE
        assert self.window.check_and_mark(pn) == fresh
        if fresh:
            self.seen.add(pn)
            self.highest = max(self.highest, pn)

    @rule(pn=st.integers(0, 200))
    def anywhere(self, pn: int) -> None:
        self._check(pn)

    @rule(back=st.integers(0, 40))
    def near_the_top(self, back: int) -> None:
        self._check(max(self.highest - back, 0))

    @rule(ahead=st.integers(1, 40))
    def ahead(self, ahead: int) -> None:
        self._check(self.highest + ahead)

    @invariant()
    def highest_agrees(self) -> None:
        assert self.window.highest == self.highest


TestReplayWindowStateful = ReplayModel.TestCase
TestReplayWindowStateful.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)


@pytest.mark.parametrize("cipher", CIPHERS)
def test_batch_sealing_equals_datagram_by_datagram(cipher: str) -> None:
    """The hot path seals a GSO batch in one call: the same datagrams, the same packet numbers
    (each used once), retransmission flags and short last blocks included."""
    from common.transport.sender import Block

    blocks = [
        Block(2, 0, 100, 0, False),
        Block(2, 100, 100, 100, True),
        Block(3, 0, 37, 200, False),
    ]
    payloads = [bytes([i]) * b.length for i, b in enumerate(blocks)]
    one_by_one, batch = pair(cipher)[0], pair(cipher)[0]
    expected = [seal_data(one_by_one, p, b.stream_offset, 5, int(b.retransmit)) for p, b in zip(payloads, blocks)]
    size = DATA_HEADER_SIZE + 100 + one_by_one.protection.overhead
    slots = [memoryview(bytearray(size)) for _ in blocks]
    last = batch.seal_data_batch(slots, blocks, 5, [memoryview(p) for p in payloads], 1)
    got = [bytes(s[: len(e)]) for s, e in zip(slots, expected)]
    assert got == expected and last == len(expected[-1])
    assert batch.packet_number == one_by_one.packet_number == 3

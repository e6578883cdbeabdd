"""Tests for common.tokens: signed transfer tokens (ascp -W)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.tokens import TokenError, create_token, verify_token

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0


def make(**overrides: object) -> str:
    args: dict[str, object] = {"user": "alice", "direction": "push", "paths": ["/data"],
                               "ttl": 3600, "now": NOW}
    args.update(overrides)
    return create_token(SECRET, **args)  # type: ignore[arg-type]


def check(token: str, **overrides: object) -> dict[str, object]:
    args: dict[str, object] = {"user": "alice", "direction": "push", "paths": ["/data/x"],
                               "now": NOW + 10}
    args.update(overrides)
    return verify_token(SECRET, token, **args)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: bytes, secret: bytes = SECRET) -> str:
    """A correctly signed token around arbitrary payload bytes."""
    head = "surge1." + b64(payload)
    return head + "." + b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


def reason(token: str, **overrides: object) -> str:
    with pytest.raises(TokenError) as info:
        check(token, **overrides)
    return info.value.reason


# ---------------------------------------------------------------------------------- round trip


def test_round_trip_returns_the_payload() -> None:
    token = make(paths=["/data", "in/box"])
    assert token.startswith("surge1.") and token.count(".") == 2
    payload = check(token, paths=["/data/a/b", "/in/box/c", "data"])
    assert payload["u"] == "alice" and payload["d"] == "push"
    assert payload["p"] == ["/data", "/in/box"]
    assert payload["iat"] == int(NOW) and payload["exp"] == int(NOW) + 3600
    assert isinstance(payload["n"], str) and payload["n"]


def test_each_token_has_its_own_nonce() -> None:
    assert make() != make()


@pytest.mark.parametrize(("alias", "name"), [("upload", "push"), ("download", "pull")])
def test_direction_aliases_when_creating(alias: str, name: str) -> None:
    token = make(direction=alias)
    assert check(token, direction=name)["d"] == name


def test_bidi_allows_both_directions() -> None:
    token = make(direction="bidi")
    check(token, direction="push")
    check(token, direction="pull")


def test_surrounding_white_space_is_ignored() -> None:
    check(make() + "\n")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"direction": "sideways"},
        {"paths": []},
        {"paths": "/data"},  # one string, not a list of paths
        {"paths": [""]},
        {"user": ""},
        {"ttl": 0},
        {"ttl": float("nan")},
    ],
)
def test_create_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make(**kwargs)


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        create_token(b"short", user="a", direction="push", paths=["/"], ttl=60)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        verify_token(b"short", make(), user="alice", direction="push", paths=[])


# ------------------------------------------------------------------------------------- tamper


def test_other_secret_is_a_bad_signature() -> None:
    with pytest.raises(TokenError, match="bad token signature") as info:
        verify_token(b"x" * 32, make(), user="alice", direction="push", paths=["/data"],
                     now=NOW)
    assert info.value.reason == "signature"


@pytest.mark.parametrize("part", [0, 1, 2])
def test_every_changed_character_is_refused(part: int) -> None:
    token = make()
    pieces = token.split(".")
    for index in range(len(pieces[part])):
        changed = list(pieces)
        text = changed[part]
        replacement = "A" if text[index] != "A" else "B"
        changed[part] = text[:index] + replacement + text[index + 1 :]
        with pytest.raises(TokenError) as info:
            check(".".join(changed))
        assert info.value.reason in ({"malformed"} if part == 0 else {"malformed", "signature"})


def test_non_canonical_base64_is_refused() -> None:
    """Other spellings of the same bytes would make tokens malleable (and replayable as new)."""
    prefix, body, mac = make().split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(mac[-1])
    assert last & 0b11 == 0  # 32 bytes: the last character carries 4 bits and 2 zero bits
    respelled = mac[:-1] + alphabet[last | 0b01]
    assert base64.urlsafe_b64decode(respelled + "=") == base64.urlsafe_b64decode(mac + "=")
    assert reason(f"{prefix}.{body}.{respelled}") == "malformed"


def test_payload_swapped_from_another_token_is_refused() -> None:
    mine, theirs = make(), make(user="bob", paths=["/"])
    forged = ".".join([*theirs.split(".")[:2], mine.split(".")[2]])
    assert reason(forged) == "signature"


def test_payload_edited_to_a_wider_grant_is_refused() -> None:
    prefix, body, mac = make().split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["p"] = ["/"]
    assert reason(f"{prefix}.{b64(json.dumps(payload).encode())}.{mac}") == "signature"


@pytest.mark.parametrize(
    "token",
    ["", "surge1", "surge1..", "surge2.e30.AAAA", "surge1.e30", "a.b.c.d", "surge1.é.x",
     "surge1.e30=.AAAA"],
)
def test_malformed_shapes(token: str) -> None:
    assert reason(token) == "malformed"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b"NaN",
        b'{"u":"alice"}',
        b'{"u":"alice","d":"push","p":["/data"],"exp":1e99,"iat":0,"n":"x"}',
        b'{"u":"alice","d":"push","p":["/data"],"exp":true,"iat":0,"n":"x"}',
        b'{"u":"alice","d":"push","p":"/data","exp":1800000000,"iat":0,"n":"x"}',
        b'{"u":"alice","d":"up","p":["/data"],"exp":1800000000,"iat":0,"n":"x"}',
        b'{"u":"alice","d":"push","p":["/data"],"exp":1800000000,"iat":1900000000,"n":"x"}',
        b"\xff\xfe",
        b"[" * 40_000,  # deeper than the recursion limit, shorter than MAX_TOKEN_LENGTH
    ],
)
def test_signed_but_malformed_payloads(payload: bytes) -> None:
    assert reason(signed(payload)) == "malformed"


def test_a_well_formed_hand_made_payload_passes() -> None:
    """Guards the malformed-payload cases above: only the bad field makes them fail."""
    token = signed(b'{"u":"alice","d":"push","p":["/data"],"exp":1800000000,"iat":0,"n":"x"}')
    assert check(token)["exp"] == 1_800_000_000


# ------------------------------------------------------------------------- expiry, user, paths


def test_expired_says_when() -> None:
    token = make(ttl=60)
    check(token, now=NOW + 59)
    with pytest.raises(TokenError, match=r"expired at 2023-11-14T22:14:20Z \(40 s ago\)") as info:
        check(token, now=NOW + 100)
    assert info.value.reason == "expired"


def test_wrong_user() -> None:
    with pytest.raises(TokenError, match="for user 'alice', not 'bob'"):
        check(make(), user="bob")


def test_wrong_direction() -> None:
    with pytest.raises(TokenError, match=r"direction pull \(download\) not allowed") as info:
        check(make(direction="push"), direction="pull")
    assert info.value.reason == "direction"
    assert reason(make(direction="pull"), direction="push") == "direction"


def test_verify_refuses_an_unknown_requested_direction() -> None:
    with pytest.raises(ValueError, match="unknown direction"):
        check(make(direction="bidi"), direction="bidi")


@pytest.mark.parametrize(
    ("granted", "requested", "covered"),
    [
        ("/data", "/data", True),
        ("/data", "/data/", True),
        ("/data", "/data/sub/file", True),
        ("/data", "data/sub", True),  # relative = relative to the docroot
        ("/data", "/database", False),
        ("/data", "/data2/x", False),
        ("/data", "/", False),
        ("/data", "/data/../etc/passwd", False),
        ("/data", "/x/../data/y", True),
        ("/data/", "/data/y", True),
        ("data/./in", "/data/in/f", True),
        ("/", "/anything/at/all", True),
        ("/", "relative", True),
        ("/data", "/dat", False),
        ("/data", "/data\0/x", False),
    ],
)
def test_path_coverage(granted: str, requested: str, covered: bool) -> None:
    token = make(paths=[granted])
    if covered:
        check(token, paths=[requested])
    else:
        with pytest.raises(TokenError, match="not covered") as info:
            check(token, paths=[requested])
        assert info.value.reason == "path"


def test_every_requested_path_must_be_covered() -> None:
    token = make(paths=["/a", "/b"])
    check(token, paths=["/a/1", "/b/2"])
    with pytest.raises(TokenError, match="'/c/3' not covered"):
        check(token, paths=["/a/1", "/c/3"])


def test_checks_run_in_order_signature_before_expiry() -> None:
    """An altered expired token is reported as altered, not as expired."""
    prefix, body, _ = make(ttl=1).split(".")
    assert reason(f"{prefix}.{body}.{b64(b'x' * 32)}", now=NOW + 100) == "signature"


# --------------------------------------------------------------------------------- robustness

_TOKEN_LIKE = st.builds(
    lambda a, b, c: f"{a}.{b}.{c}",
    st.sampled_from(["surge1", "surge2", ""]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/",
            max_size=80),
    st.text(max_size=50),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["u", "d", "p", "exp", "iat", "n", "x"]), inner, max_size=7),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | _TOKEN_LIKE)
def test_verify_raises_only_token_error_on_any_string(token: str) -> None:
    with pytest.raises(TokenError):
        check(token)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_verify_raises_only_token_error_on_any_signed_payload(payload: object) -> None:
    token = signed(json.dumps(payload).encode())
    try:
        check(token, paths=["/"])
    except TokenError:
        pass

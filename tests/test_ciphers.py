"""Cipher negotiation: the full client/server matrix of the ascp reference, cell by cell.

Rules (ascp reference, "-c cipher"):

* a key shorter than the server's is upgraded to the server's length (a longer one is kept);
* a server that requires GCM refuses CFB; a server that requires CFB, or is 3.8.1 or older
  (no GCM), refuses GCM; a bare key length (``aes128``) lets the server pick the mode: GCM,
  unless it requires CFB or cannot do GCM;
* a server set to ``none`` refuses every cipher; a server that requires a cipher refuses
  ``none``; ``any`` accepts everything.

A 3.8.1-or-older *client* can only do CFB: it behaves as the ``aesNNNcfb`` rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from _pytest.mark import ParameterSet

from common.transport.ciphers import (
    CIPHER_CHOICES,
    CipherRefused,
    CipherRequest,
    ServerCipherPolicy,
    negotiate,
    normalize_cipher,
)

X = "refused"

# Server v3.9.0+ (GCM capable). One row per client request, one column per server setting.
SERVERS = ("any", "none", "aes128", "aes192", "aes256", "gcm", "cfb",
           "aes128gcm", "aes192gcm", "aes256gcm", "aes128cfb", "aes192cfb", "aes256cfb")  # fmt: skip
MATRIX = {  # request: results in the order of SERVERS
    "aes128": ("aes128gcm", X, "aes128gcm", "aes192gcm", "aes256gcm", "aes128gcm", "aes128cfb",
               "aes128gcm", "aes192gcm", "aes256gcm", "aes128cfb", "aes192cfb", "aes256cfb"),
    "aes192": ("aes192gcm", X, "aes192gcm", "aes192gcm", "aes256gcm", "aes192gcm", "aes192cfb",
               "aes192gcm", "aes192gcm", "aes256gcm", "aes192cfb", "aes192cfb", "aes256cfb"),
    "aes256": ("aes256gcm", X, "aes256gcm", "aes256gcm", "aes256gcm", "aes256gcm", "aes256cfb",
               "aes256gcm", "aes256gcm", "aes256gcm", "aes256cfb", "aes256cfb", "aes256cfb"),
    "aes128gcm": ("aes128gcm", X, "aes128gcm", "aes192gcm", "aes256gcm", "aes128gcm", X,
                  "aes128gcm", "aes192gcm", "aes256gcm", X, X, X),
    "aes192gcm": ("aes192gcm", X, "aes192gcm", "aes192gcm", "aes256gcm", "aes192gcm", X,
                  "aes192gcm", "aes192gcm", "aes256gcm", X, X, X),
    "aes256gcm": ("aes256gcm", X, "aes256gcm", "aes256gcm", "aes256gcm", "aes256gcm", X,
                  "aes256gcm", "aes256gcm", "aes256gcm", X, X, X),
    "aes128cfb": ("aes128cfb", X, "aes128cfb", "aes192cfb", "aes256cfb", X, "aes128cfb",
                  X, X, X, "aes128cfb", "aes192cfb", "aes256cfb"),
    "aes192cfb": ("aes192cfb", X, "aes192cfb", "aes192cfb", "aes256cfb", X, "aes192cfb",
                  X, X, X, "aes192cfb", "aes192cfb", "aes256cfb"),
    "aes256cfb": ("aes256cfb", X, "aes256cfb", "aes256cfb", "aes256cfb", X, "aes256cfb",
                  X, X, X, "aes256cfb", "aes256cfb", "aes256cfb"),
    "none": ("none", "none", X, X, X, X, X, X, X, X, X, X, X),
}  # fmt: skip

# Server v3.8.1 or older: no GCM, so no setting that requires it.
OLD_SERVERS = (
    "any",
    "none",
    "aes128",
    "aes192",
    "aes256",
    "cfb",
    "aes128cfb",
    "aes192cfb",
    "aes256cfb",
)
OLD_MATRIX = {
    "aes128": ("aes128cfb", X, "aes128cfb", "aes192cfb", "aes256cfb", "aes128cfb",
               "aes128cfb", "aes192cfb", "aes256cfb"),
    "aes192": ("aes192cfb", X, "aes192cfb", "aes192cfb", "aes256cfb", "aes192cfb",
               "aes192cfb", "aes192cfb", "aes256cfb"),
    "aes256": ("aes256cfb", X, "aes256cfb", "aes256cfb", "aes256cfb", "aes256cfb",
               "aes256cfb", "aes256cfb", "aes256cfb"),
    "aes128gcm": (X,) * 9,
    "aes192gcm": (X,) * 9,
    "aes256gcm": (X,) * 9,
    "aes128cfb": ("aes128cfb", X, "aes128cfb", "aes192cfb", "aes256cfb", "aes128cfb",
                  "aes128cfb", "aes192cfb", "aes256cfb"),
    "aes192cfb": ("aes192cfb", X, "aes192cfb", "aes192cfb", "aes256cfb", "aes192cfb",
                  "aes192cfb", "aes192cfb", "aes256cfb"),
    "aes256cfb": ("aes256cfb", X, "aes256cfb", "aes256cfb", "aes256cfb", "aes256cfb",
                  "aes256cfb", "aes256cfb", "aes256cfb"),
    "none": ("none", "none", X, X, X, X, X, X, X),
}  # fmt: skip


def cells(
    servers: tuple[str, ...], matrix: Mapping[str, tuple[str, ...]], gcm_capable: bool
) -> Iterator[ParameterSet]:
    for request, row in matrix.items():
        assert len(row) == len(servers), request
        for server, expected in zip(servers, row):
            yield pytest.param(request, server, gcm_capable, expected,
                               id=f"{request}-vs-{server}{'' if gcm_capable else '-old'}")  # fmt: skip


ALL_CELLS = [*cells(SERVERS, MATRIX, True), *cells(OLD_SERVERS, OLD_MATRIX, False)]


def test_matrix_covers_every_request() -> None:
    assert set(MATRIX) == set(CIPHER_CHOICES) == set(OLD_MATRIX)


def why_refused(request: str, server: str, gcm_capable: bool) -> str:
    """The words the refusal must contain to say why."""
    if server == "none":
        return "only unencrypted"
    if request == "none":
        return "requires encryption"
    if not gcm_capable:
        return "does not support GCM"
    if request.endswith("gcm"):
        return "requires CFB"
    return "requires GCM"


@pytest.mark.parametrize(("request_", "server", "gcm_capable", "expected"), ALL_CELLS)
def test_negotiation_matrix(request_: str, server: str, gcm_capable: bool, expected: str) -> None:
    policy = ServerCipherPolicy(server, gcm_capable=gcm_capable)
    if expected == X:
        with pytest.raises(CipherRefused, match=why_refused(request_, server, gcm_capable)) as info:
            negotiate(request_, policy)
        assert "refuses" in str(info.value)
    else:
        assert negotiate(request_, policy) == expected
        assert negotiate(CipherRequest.parse(request_), policy) == expected


@pytest.mark.parametrize(
    "request_", ["AES-128", "Aes-256-GCM", " aes192cfb ", "aes-128cfb", "NONE"]
)
def test_negotiate_accepts_any_spelling(request_: str) -> None:
    canonical = normalize_cipher(request_)
    policy = ServerCipherPolicy("any")
    assert negotiate(request_, policy) == negotiate(canonical, policy)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("aes128", "aes128"), ("AES-128-GCM", "aes128gcm"), ("aes-256-cfb", "aes256cfb"),
     ("aes192gcm", "aes192gcm"), ("none", "none"), ("None", "none"), (" aes256 ", "aes256")],
)  # fmt: skip
def test_normalize_cipher(text: str, canonical: str) -> None:
    assert normalize_cipher(text) == canonical


@pytest.mark.parametrize("text", ["", "aes", "aes64", "aes128ctr", "des", "aes-128-", "gcm", "any"])
def test_unknown_cipher_names_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="unknown cipher"):
        normalize_cipher(text)


@pytest.mark.parametrize(
    ("text", "bits", "mode"),
    [
        ("aes128", 128, None),
        ("aes256gcm", 256, "gcm"),
        ("aes192cfb", 192, "cfb"),
        ("none", None, None),
    ],
)
def test_cipher_request_parse(text: str, bits: int | None, mode: str | None) -> None:
    assert CipherRequest.parse(text) == CipherRequest(bits, mode)


@pytest.mark.parametrize("setting", ["bogus", "aes64", "ctr", ""])
def test_bad_server_setting_is_rejected(setting: str) -> None:
    with pytest.raises(ValueError, match="server cipher setting"):
        ServerCipherPolicy(setting)


def test_refusal_is_a_value_error() -> None:
    assert issubclass(CipherRefused, ValueError)

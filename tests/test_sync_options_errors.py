"""coordinator.sync.options refusals: incompatible options and bad values, each a one-line error
naming the option."""

from __future__ import annotations

import os
import sys

import pytest

from coordinator.sync import options as options_module

sys.path.insert(0, os.path.dirname(__file__))
from sync_options_helpers import BASE, error, error_of, parse

# ----------------------------------------------------------------------- incompatibilities

INCOMPATIBLE: list[tuple[list[str], str, str]] = [
    (["--mirror", "-K", "bidi"], "--mirror", "-K bidi"),
    (["--mirror", "--no-scan", "-C"], "--mirror", "--no-scan"),
    (["--mirror", "--remove-after-transfer"], "--mirror", "--remove-after-transfer"),
    (["--mirror", "--exclude-dirs-older-than=24:00:00"], "--mirror",
     "--exclude-dirs-older-than"),
    (["--mirror", "--ignore-delete"], "--mirror", "--ignore-delete"),
    (["--delete-before", "--delete-delay"], "--delete-before", "--delete-delay"),
    (["--delete-before", "--ignore-delete"], "--delete-before", "--ignore-delete"),
    (["--no-scan"], "--no-scan", "one-time"),
    (["--no-scan", "-C", "--scan-interval=10"], "--no-scan", "--scan-interval"),
    (["-K", "bidi", "-o", "always"], "-o always", "-K bidi"),
    (["-K", "bidi", "-o", "older"], "-o older", "-K bidi"),
    (["--dedup"], "--dedup", "-k"),
    (["--dedup", "-k", "sha1-sparse"], "--dedup", "sha1-sparse"),
    (["--dedup=copy", "-k", "none"], "--dedup", "-k"),
    (["--dedup", "-k", "sha1", "-u"], "--dedup=hardlink", "-u"),
    (["--dedup", "-k", "md5", "-j"], "--dedup=hardlink", "-j"),
    (["--write-uid=bob", "-u"], "--write-uid", "-u"),
    (["--write-gid=staff", "--preserve-gid"], "--write-gid", "-j"),
    (["-l", "1m", "-m", "2m"], "-m", "-l"),
]


@pytest.mark.parametrize(("argv", "first", "second"), INCOMPATIBLE,
                         ids=[" ".join(row[0]) for row in INCOMPATIBLE])
def test_incompatible_options(argv: list[str], first: str, second: str) -> None:
    message = error(*argv)
    assert message.startswith(first)
    assert second in message


@pytest.mark.parametrize("argv", [
    ["--mirror"], ["--mirror", "-K", "pull"], ["--delete-before"], ["--no-scan", "-C"],
    ["-o", "conflict"], ["-K", "pull", "-o", "conflict"], ["-K", "bidi", "-o", "conflict"],
    ["--dedup=copy", "-k", "md5", "-u", "-j"], ["--write-uid=bob", "-j"],
    ["--scan-interval=10"], ["--delete-delay", "--ignore-delete"],
    ["--keep-dir-local=/does/not/exist"],
])
def test_compatible_combinations_are_accepted(argv: list[str]) -> None:
    parse(*argv)


def test_native_acls_and_xattrs_depend_on_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options_module, "NATIVE_ACLS", False)
    assert error("--preserve-acls=native") == \
        "--preserve-acls=native is not supported on this platform"
    assert error("--remote-preserve-acls=native").startswith("--remote-preserve-acls=native")
    assert parse("-r", "host:/r", "--remote-preserve-acls=native").remote_preserve_acls == "native"
    monkeypatch.setattr(options_module, "NATIVE_XATTRS", False)
    assert error("--preserve-xattrs=native").startswith("--preserve-xattrs=native is not")
    monkeypatch.setattr(options_module, "NATIVE_ACLS", True)
    monkeypatch.setattr(options_module, "NATIVE_XATTRS", True)
    assert parse("--preserve-acls=native").remote_preserve_acls == "native"
    assert parse("--preserve-xattrs=native").preserve_xattrs == "native"


# ------------------------------------------------------------------------------ bad values

BAD_VALUES: list[tuple[list[str], str]] = [
    (["-K", "sideways"], "-K: unknown direction"),
    (["-k", "sha256"], "-k: unknown checksum"),
    (["-o", "never"], "-o: unknown overwrite policy"),
    (["--dedup=bogus", "-k", "sha1"], "--dedup: unknown mode"),
    (["--preserve-xattrs=all"], "--preserve-xattrs: unknown mode"),
    (["--remote-preserve-acls=x"], "--remote-preserve-acls: unknown mode"),
    (["-n", "hardlink"], "-n: unknown symbolic link action"),
    (["-H", "extreme"], "-H: unknown scan intensity"),
    (["-a", "fast"], "-a: unknown rate policy"),
    (["-c", "aes512"], "-c: unknown cipher"),
    (["--compression=gzip"], "--compression: unknown method"),
    (["--cooloff=61"], "--cooloff: 61 out of range 0..60"),
    (["--cooloff=-1"], "--cooloff: invalid number"),
    (["--cooloff-max=x"], "--cooloff-max: invalid number"),
    (["--pending-max=0"], "--pending-max: 0 out of range"),
    (["--local-fs-threads=0"], "--local-fs-threads: 0 out of range"),
    (["--remote-scan-threads=100000"], "--remote-scan-threads:"),
    (["--support-resume=lots"], "--support-resume: invalid size"),
    (["--scan-interval=1x"], "--scan-interval: invalid duration"),
    (["--scan-interval=0"], "--scan-interval: the interval must be positive"),
    (["--remote-scan-interval=1h30"], "--remote-scan-interval: invalid duration"),
    (["--transfer-threads=0"], "--transfer-threads: 0 out of range"),
    (["--transfer-threads=2:x"], "--transfer-threads: invalid size"),
    (["--transfer-threads=2", "--transfer-threads=4"], "--transfer-threads: two thread groups"),
    (["-X", "1441"], "-X: 1441 out of range"),
    (["-Z", "100"], "-Z: 100 out of range"),
    (["-O", "0"], "-O: 0 out of range"),
    (["-P", "70000"], "-P: 70000 out of range"),
    (["-G", "17M"], "-G: block size"),
    (["-g", "0"], "-g: block size 0"),
    (["-l", "10%"], "-l: invalid rate"),
    (["-l", "0"], "-l: invalid rate '0bps': must be greater than zero"),
    (["-l", "fast"], "-l: invalid rate 'fast'"),
    (["-m", "1x"], "-m: invalid rate"),
    (["-L", "/logs:abc"], "-L: invalid number"),
    (["-R", "/logs:0"], "-R: 0 out of range"),
    (["--tags", "[1]"], "--tags: expected a JSON object"),
    (["--tags", "{"], "--tags: invalid JSON"),
    (["--tags", '{"a": "' + "x" * 4100 + '"}'], "--tags: longer than 4096 bytes"),
    (["--tags64", "!!"], "--tags64: not base64"),
    (["--proxy=dnats://u@proxy"], "--proxy: expected dnat[s]://"),
    (["--proxy=http://u:p@proxy"], "--proxy: expected dnat[s]://"),
    (["--watchd=mysql:h:1"], "--watchd: invalid value"),
    (["--watchd=redis:h:0"], "--watchd: 0 out of range"),
    (["--no-log=all"], "--no-log: only 'stats'"),
    (["--check-sshfp=zz"], "--check-sshfp: invalid fingerprint"),
    (["--cookie=a\nb"], "--cookie: must not contain"),
    (["--write-uid=a b"], "--write-uid: invalid id"),
    (["-w", ""], "-w: empty value"),
    (["-W", " "], "-W: empty value"),
    (["--exclude-dirs-older-than=0"], "--exclude-dirs-older-than: epoch seconds must be"),
    (["--bogus"], "--bogus: unknown option"),
    (["stray"], "stray: unexpected argument"),
    (["-K"], "-K/--direction: expected one argument"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_VALUES,
                         ids=[" ".join(row[0])[:40] for row in BAD_VALUES])
def test_bad_values(argv: list[str], expected: str) -> None:
    assert error(*argv).startswith(expected)


def test_the_proxy_password_is_not_in_the_error() -> None:
    assert "hunter2" not in error("--proxy=socks://u:hunter2@proxy")


@pytest.mark.parametrize("text", ["1d", "24h", "30m", "1d 25:00:00", "yesterday", "1w2d",
                                  "2015-13-01T00:00:00", "2015-01-01 08:00:00", "-5",
                                  "1d 0:0:0.5ms"])
def test_bad_exclude_dirs_older_than(text: str) -> None:
    assert error("--exclude-dirs-older-than", text).startswith("--exclude-dirs-older-than: ")


def test_exclude_dirs_older_than_cannot_reach_before_1970() -> None:
    message = error_of(*BASE, "--exclude-dirs-older-than=9999w0d0h0m0s")
    assert message.startswith("--exclude-dirs-older-than:")

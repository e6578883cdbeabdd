"""coordinator.cp.options refusals and requests: errors naming the option, help and version, and
property tests that parsing only ever returns options or raises OptionError or an InfoRequest."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import __version__
from common.units import Rate
from coordinator.cp.options import (
    CopyOptions,
    InfoRequest,
    OptionError,
    ShowHelp,
    ShowVersion,
    build_parser,
)

sys.path.insert(0, os.path.dirname(__file__))
from cp_options_helpers import parse, parse_error

# ------------------------------------------------------------------------------------ errors

ERRORS: list[tuple[list[str], str]] = [
    (["--bogus", "a", "b"], "--bogus: unknown option"),
    (["-Q", "a", "b"], "-Q: unknown option"),
    (["--file-lis=x", "a", "b"], "--file-lis=x: unknown option"),  # no abbreviations
    (["a", "b", "-l"], "-l: expected one argument"),
    (["-l", "10x", "a", "b"], "-l: invalid rate '10x'"),
    (["-l", "0", "a", "b"], "-l: invalid rate '0'"),
    (["-l", "-5M", "a", "b"], "-l: invalid rate '-5M'"),
    (["-l", "2000G", "a", "b"], "-l: invalid rate"),
    (["-m", "fast", "a", "b"], "-m: invalid rate"),
    (["-m", "20M", "a", "b"], "-m: minimum rate 20.0 Mbps is above the target rate 10.0 Mbps"),
    (["-l", "1M", "-m", "2M", "a", "b"], "-m: minimum rate"),
    (["-k", "4", "a", "b"], "-k: resume level 4 out of range 0..3"),
    (["-k", "x", "a", "b"], "-k: invalid number 'x'"),
    (["-k", "-1", "a", "b"], "-k: invalid number '-1'"),
    (["--overwrite=sometimes", "a", "b"], "--overwrite: unknown overwrite policy 'sometimes'"),
    (["--policy=greedy", "a", "b"], "--policy: unknown policy 'greedy'"),
    (["--overwrite=", "a", "b"], "--overwrite: unknown overwrite policy ''"),
    (["--file-manifest=", "a", "b"], "--file-manifest: unknown manifest type ''"),
    (["-c", "rot13", "a", "b"], "-c: unknown cipher 'rot13'"),
    (["-T", "-c", "aes256", "a", "b"], "-T: conflicts with -c aes256"),
    (["-Z", "295", "a", "b"], "-Z: datagram size 295 out of range 296..65535"),
    (["-Z", "65536", "a", "b"], "-Z: datagram size 65536 out of range"),
    (["-X", "1441", "a", "b"], "-X: retransmission request size 1441 out of range"),
    (["-O", "0", "a", "b"], "-O: UDP port 0 out of range 1..65535"),
    (["-O", "65536", "a", "b"], "-O: UDP port 65536"),
    (["-P", "70000", "a", "b"], "-P: SSH port 70000"),
    (["-P", "ssh", "a", "b"], "-P: invalid number 'ssh'"),
    (["-C", "3:2", "a", "b"], "-C: node id 3 out of range 1..2"),
    (["-C", "0:2", "a", "b"], "-C: node id 0 out of range"),
    (["-C", "1:129", "a", "b"], "-C: node count 129 out of range 1..128"),
    (["-C", "2", "a", "b"], "-C: invalid value '2'"),
    (["--multi-session-threshold=-1", "a", "b"], "--multi-session-threshold: invalid size"),
    (["--file-checksum=crc32", "a", "b"], "--file-checksum: unknown checksum 'crc32'"),
    (["--file-manifest=xml", "a", "b"], "--file-manifest: unknown manifest type 'xml'"),
    (["--file-manifest=text", "a", "b"], "--file-manifest: 'text' requires --file-manifest-path"),
    (["--mode=send", "a", "b"], "--mode: requires --host"),
    (["--mode=push", "--host=h", "a", "b"], "--mode: unknown mode 'push'"),
    (["--host=h", "a", "b"], "--host: requires --mode"),
    (["--remove-after-transfer", "--move-after-transfer=/x", "a", "b"],
     "--move-after-transfer: cannot be combined with --remove-after-transfer"),
    (["--remove-empty-source-directory", "a", "b"],
     "--remove-empty-source-directory: requires --remove-empty-directories"),
    (["-@", "10:5", "a", "b"], "-@: range start 10 is after range end 5"),
    (["-@", "a:b", "a", "b"], "-@: invalid value 'a:b'"),
    (["-@", "-5:10", "a", "b"], "-@: invalid value '-5:10'"),
    (["-@", "0:10", "a", "b", "c"], "-@: transfers part of a single file"),
    (["-@", "0:10", "--file-list=l", "c"], "-@: transfers part of a single file"),
    (["-@", "0:10", "-k", "1", "a", "b"], "-@: does not support resume"),
    (["--exclude-newer-than=yesterday", "a", "b"], "--exclude-newer-than: invalid time"),
    (["--exclude-older-than", "-x", "a", "b"], "--exclude-older-than: invalid time '-x'"),
    (["-g", "501M", "a", "b"], "-g: invalid size '501M': above the maximum of 500 MiB"),
    (["-G", "0", "a", "b"], "-G: invalid size '0'"),
    (["-G", "big", "a", "b"], "-G: invalid size 'big'"),
    (["-L", "/logs:lots", "a", "b"], "-L: invalid size 'lots'"),
    (["-L", "", "a", "b"], "-L: empty log directory"),
    (["--check-sshfp=xyz", "a", "b"], "--check-sshfp: invalid fingerprint 'xyz'"),
    (["--check-sshfp=abc", "a", "b"], "--check-sshfp: invalid fingerprint"),  # odd length
    (["--cookie=a\nb", "a", "b"], "--cookie: must not contain CR, LF or NUL"),
    (["--tags=not json", "a", "b"], "--tags: invalid JSON"),
    (["--tags=[1, 2]", "a", "b"], "--tags: expected a JSON object, got list"),
    (["--tags", json.dumps({"k": "v" * 4100}), "a", "b"], "--tags: longer than 4096 bytes"),
    (["--tags", "[" * 3000 + "]" * 3000, "a", "b"], "--tags: "),
    (["--tags64=!!!", "a", "b"], "--tags64: not base64-encoded UTF-8 text"),
    (["--tags64", base64.b64encode(b"[]").decode(), "a", "b"], "--tags64: expected a JSON object"),
    (["-W", "", "a", "b"], "-W: empty token"),
    (["-W", "@", "a", "b"], "-W: missing token file name"),
    (["-W", "@/nonexistent/surge-token", "a", "b"], "-W: cannot read token file"),
    (["--symbolic-links=hard", "a", "b"], "--symbolic-links: unknown method 'hard': expected one of follow, copy"),
    (["--delete-before-transfer", "a", "b", "c"], "--delete-before-transfer: takes one source directory"),
    (["--delete-before-transfer", "--file-list=l", "c"], "--delete-before-transfer: takes one source"),
    (["-E", "[abc", "a", "b"], "-E: unterminated '['"),
    (["-N", "x", "-E", "a**", "a", "b"], "-E: '**' must follow a '/'"),
    (["--exclude", "[z-a]", "a", "b"], "-E: "),
    (["s3://bucket/key", "dst"], "s3://bucket/key: s3:// URIs (cloud storage, stdio) are not supported"),
    (["a", "azu://account/container/"], "azu://account/container/: azu:// URIs"),
    (["a", "stdio://"], "stdio://: stdio:// URIs"),
    (["--dest64", "a", "not base64!"], "--dest64: 'not base64!' is not base64-encoded UTF-8 text"),
    (["--source-prefix64=%%%", "a", "b"], "--source-prefix64: '%%%' is not base64"),
    (["--source-prefix=", "a", "b"], "--source-prefix: empty prefix"),
    (["-K", "fast", "a", "b"], "-K: invalid rate 'fast'"),
    (["-y", "1", "a", "b"], "-y 1: HTTP fallback is not supported: Surge transfers over UDP only"),
    (["-y", "yes", "a", "b"], "-y: invalid value 'yes': expected 0 or 1"),
    (["-j", "2", "a", "b"], "-j: invalid value '2': expected 0 or 1"),
    (["-t", "0", "a", "b"], "-t: invalid port '0'"),
    (["-e", "/usr/local/bin/prepost", "a", "b"], "-e: pre/post-processing scripts are not supported"),
    (["-f", "/etc/aspera.conf", "a", "b"], "-f: a Surge client reads no aspera.conf"),
    (["--file-crypt=encrypt", "a", "b"], "--file-crypt: client-side encryption at rest is not supported"),
    (["--file-crypt=scramble", "a", "b"], "--file-crypt: invalid value 'scramble'"),
    (["--proxy=dnats://u@proxy", "a", "b"], "--proxy: expected dnat[s]://USER:PASSWORD@HOST[:PORT]"),
    (["--proxy=dnat://u:p@proxy:99999", "a", "b"], "--proxy: expected dnat[s]://"),
    (["-wr", "a", "b"], "-wr: bandwidth measurement is not supported"),
    (["-wf", "a", "b"], "-wf: bandwidth measurement is not supported"),
    (["--preserve-acls=native", "a", "b"], "--preserve-acls=native: surge cp does not preserve ACLs"),
    (["--remote-preserve-xattrs=metafile", "a", "b"], "--remote-preserve-xattrs=metafile: surge cp does not"),
    (["--preserve-xattrs=all", "a", "b"], "--preserve-xattrs: unknown mode 'all'"),
    ([], "missing destination"),
    (["only-one"], "missing source or destination: only 'only-one' given"),
    (["--file-list=l"], "missing destination"),
    (["-q", "--", "a"], "missing source or destination"),
]


@pytest.mark.parametrize(("argv", "expected"), ERRORS)
def test_errors_name_the_option(argv: list[str], expected: str) -> None:
    message = parse_error(*argv)
    assert message.startswith(expected)


def test_unknown_options_are_counted() -> None:
    assert parse_error("--x", "--y", "a", "b") == "--x: unknown option (and 1 more)"


def test_token_file_empty_or_too_large(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert parse_error("-W", f"@{empty}", "a", "b").startswith("-W: token file")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    assert "larger than 64.0 KiB" in parse_error("-W", f"@{big}", "a", "b")


def test_copy_options_validates_direct_construction() -> None:
    with pytest.raises(OptionError, match=r"^-k: "):
        CopyOptions(sources=("a",), destination="b", resume=9)
    with pytest.raises(OptionError, match=r"^missing source"):
        CopyOptions(sources=(), destination="b")
    with pytest.raises(OptionError, match=r"^--file-list: cannot be combined"):
        CopyOptions(sources=(), destination="b", file_list="x", file_pair_list="y")
    with pytest.raises(OptionError, match=r"^-@: byte positions must not be negative"):
        CopyOptions(sources=("a",), destination="b", byte_range=(-1, None))
    with pytest.raises(OptionError, match=r"^-l: target rate must be greater than zero"):
        CopyOptions(sources=("a",), destination="b", target_rate=Rate(bits_per_second=0))


# ------------------------------------------------------------------------------ help, version


def test_version_raises_show_version() -> None:
    for flag in ("-A", "--version"):
        with pytest.raises(ShowVersion) as caught:
            parse(flag)
        assert __version__ in caught.value.text
        assert caught.value.text.startswith("surge cp ")


def test_help_raises_show_help_with_every_option() -> None:
    with pytest.raises(ShowHelp) as caught:
        parse("a", "-h")
    text = caught.value.text
    assert text.startswith("usage: surge cp ")
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
        for option in action.option_strings:
            assert option in text
    assert isinstance(caught.value, InfoRequest)


def test_parser_error_raises_instead_of_exiting() -> None:
    with pytest.raises(OptionError, match=r"^-k: expected one argument"):
        build_parser().parse_args(["-k"])


# -------------------------------------------------------------------------------- properties

WORDS = st.one_of(
    st.sampled_from(["-l", "-m", "-k", "-@", "-C", "-E", "-N", "-L", "-Z", "-O", "-T", "-c",
                     "-p", "-D", "--tags", "--tags64", "--file-list", "--mode", "--host",
                     "--exclude-newer-than", "--overwrite", "-W", "--", "-", "a", "b", "1",
                     "10M", "0:5", "-3600"]),
    st.text(max_size=12).filter(lambda word: not word.startswith("@")),
)


@given(st.lists(WORDS, max_size=8))
def test_parse_only_raises_option_error_or_info(argv: list[str]) -> None:
    try:
        options = parse(*argv)
    except (OptionError, InfoRequest):
        return
    assert options.destination
    assert options.sources or options.file_list is not None or options.file_pair_list is not None


@given(st.lists(st.tuples(st.sampled_from(["-E", "-N", "--exclude", "--include"]),
                          st.text(alphabet=st.characters(blacklist_characters="[]\\*/"), min_size=1,
                                  max_size=8).filter(lambda p: p != "--")),
                max_size=6))
def test_filter_order_property(rules: list[tuple[str, str]]) -> None:
    argv = [word for rule in rules for word in rule]
    options = parse(*argv, "src", "dst")
    kinds = {"-E": "exclude", "--exclude": "exclude", "-N": "include", "--include": "include"}
    assert options.filters == tuple((kinds[flag], pattern) for flag, pattern in rules)


@given(st.sampled_from(["-E", "-N"]), st.text(max_size=10))
def test_any_pattern_is_accepted_or_refused_naming_its_option(option: str, pattern: str) -> None:
    try:
        options = parse(option, pattern, "src", "dst")
    except OptionError as error:
        assert str(error).startswith(f"{option}: ")
        return
    assert options.filters == (("exclude" if option == "-E" else "include", pattern),)

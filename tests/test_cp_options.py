"""Tests for coordinator.cp.options: the ascp-syntax command line of `surge cp`."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

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
    parse_cp_args,
)

NOW = 1_700_000_000.0


def parse(*argv: str, env: dict[str, str] | None = None) -> CopyOptions:
    return parse_cp_args(list(argv), env={} if env is None else env, now=NOW)


def parse_error(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(OptionError) as caught:
        parse(*argv, env=env)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------ defaults


def test_defaults_are_ascps() -> None:
    options = parse("src", "dst")
    assert options == CopyOptions(sources=("src",), destination="dst")
    assert options.target_rate == Rate(bits_per_second=10_000_000)  # 10000 Kbps
    assert options.min_rate == Rate(bits_per_second=0)
    assert options.resume == 0
    assert options.overwrite == "diff"
    assert options.policy is None  # the server's (fair)
    assert options.cipher == "aes128"
    assert options.datagram_size is None  # path MTU
    assert options.rexmsg_size == 1440
    assert options.udp_port == 33001
    assert options.ssh_port == 22
    assert options.multi_session is None and options.multi_session_threshold == 0
    assert options.file_checksum == "none"
    assert options.file_manifest == "none" and options.file_manifest_path is None
    assert options.file_manifest_inprogress_suffix == ".aspera-inprogress"
    assert options.partial_file_suffix == ""
    assert options.log_dir is None and options.log_size == 10 * 1024 * 1024
    assert options.debug == 0 and not options.quiet
    assert options.filters == () and options.keys == ()
    assert options.byte_range is None
    assert options.password is None and options.token is None and options.cookie is None
    assert not any((options.create_dir, options.preserve_mtime, options.preserve_atime,
                    options.preserve_source_atime, options.remove_after_transfer,
                    options.remove_empty_directories, options.remove_empty_source_directory,
                    options.skip_special_files, options.save_before_overwrite,
                    options.precalculate_job_size, options.ipv6,
                    options.destination_must_be_directory))


def test_sources_and_destination() -> None:
    options = parse("a", "faux:///x?size=1G", "user@host:/dst")
    assert options.sources == ("a", "faux:///x?size=1G")
    assert options.destination == "user@host:/dst"
    assert options.destination_must_be_directory
    assert not parse("a", "b").destination_must_be_directory


def test_options_after_positionals() -> None:
    options = parse("a", "-q", "b", "-l", "5M")
    assert options.sources == ("a",) and options.destination == "b"
    assert options.quiet and options.target_rate == Rate(bits_per_second=5_000_000)


def test_double_dash_ends_options() -> None:
    options = parse("-q", "--", "-weird", "-dest")
    assert options.quiet and options.sources == ("-weird",) and options.destination == "-dest"


# ------------------------------------------------------------------------------ each option

ONE_OPTION: list[tuple[list[str], str, Any]] = [
    (["--src-base", "/data"], "src_base", "/data"),
    (["--src-base=/data"], "src_base", "/data"),
    (["-d"], "create_dir", True),
    (["--preserve-modification-time"], "preserve_mtime", True),
    (["--preserve-access-time"], "preserve_atime", True),
    (["--preserve-source-access-time"], "preserve_source_atime", True),
    (["--remove-after-transfer"], "remove_after_transfer", True),
    (["--move-after-transfer=/archive"], "move_after_transfer", "/archive"),
    (["--remove-empty-directories"], "remove_empty_directories", True),
    (["--skip-special-files"], "skip_special_files", True),
    (["--save-before-overwrite"], "save_before_overwrite", True),
    (["--exclude-newer-than=1600000000"], "exclude_newer_than", 1_600_000_000),
    (["--exclude-newer-than", "-3600"], "exclude_newer_than", NOW - 3600),
    (["--exclude-older-than=-86400"], "exclude_older_than", NOW - 86400),
    (["--exclude-older-than", "1500000000"], "exclude_older_than", 1_500_000_000),
    (["--precalculate-job-size"], "precalculate_job_size", True),
    (["-k", "2"], "resume", 2),
    (["-k3"], "resume", 3),
    (["-@", "100:200"], "byte_range", (100, 200)),
    (["-@", "100:"], "byte_range", (100, None)),
    (["-@:200"], "byte_range", (None, 200)),
    (["--overwrite=never"], "overwrite", "never"),
    (["--overwrite", "diff+older"], "overwrite", "diff+older"),
    (["--overwrite=ALWAYS"], "overwrite", "always"),
    (["-l", "100M"], "target_rate", Rate(bits_per_second=100_000_000)),
    (["-l", "500"], "target_rate", Rate(bits_per_second=500_000)),
    (["-l", "80%"], "target_rate", Rate(percent=80)),
    (["-m", "1M"], "min_rate", Rate(bits_per_second=1_000_000)),
    (["-m", "0"], "min_rate", Rate(bits_per_second=0)),
    (["-m", "10p"], "min_rate", Rate(percent=10)),
    (["--policy=fixed"], "policy", "fixed"),
    (["-a", "low"], "policy", "low"),
    (["-c", "aes256gcm"], "cipher", "aes256gcm"),
    (["-c", "AES-192"], "cipher", "aes192"),
    (["-c", "aes_128_cfb"], "cipher", "aes128cfb"),
    (["-c", "none"], "cipher", "none"),
    (["-T"], "cipher", "none"),
    (["-T", "-c", "none"], "cipher", "none"),
    (["-Z", "9000"], "datagram_size", 9000),
    (["-Z", "296"], "datagram_size", 296),
    (["-X", "1000"], "rexmsg_size", 1000),
    (["-O", "33002"], "udp_port", 33002),
    (["-P", "33001"], "ssh_port", 33001),
    (["--user", "alice"], "user", "alice"),
    (["-i", "k1", "-i", "/k2"], "keys", ("k1", "/k2")),
    (["-6"], "ipv6", True),
    (["-C", "2:3"], "multi_session", (2, 3)),
    (["-C", "128:128"], "multi_session", (128, 128)),
    (["--multi-session-threshold=1G"], "multi_session_threshold", 1 << 30),
    (["--multi-session-threshold", "5000"], "multi_session_threshold", 5000),
    (["--file-checksum=md5"], "file_checksum", "md5"),
    (["--file-checksum=sha-256"], "file_checksum", "sha-256"),
    (["--file-checksum=SHA512"], "file_checksum", "sha-512"),
    (["--file-checksum=sha1"], "file_checksum", "sha1"),
    (["--file-manifest-path=/m"], "file_manifest_path", "/m"),
    (["--file-manifest-inprogress-suffix=.wip"], "file_manifest_inprogress_suffix", ".wip"),
    (["--partial-file-suffix=.partial"], "partial_file_suffix", ".partial"),
    (["-q"], "quiet", True),
    (["-L", "/var/log/surge"], "log_dir", "/var/log/surge"),
    (["-L", "/logs:20M"], "log_size", 20 << 20),
    (["-L", "/logs:20M"], "log_dir", "/logs"),
    (["-L", "C:\\logs"], "log_dir", "C:\\logs"),
    (["-D"], "debug", 1),
    (["-DD"], "debug", 2),
    (["-DDD"], "debug", 3),
    (["-D", "-D"], "debug", 2),
    (["--check-sshfp=F74E5DE9ED0D62FEAF0616ED1E851133C42A0082"], "check_sshfp",
     "f74e5de9ed0d62feaf0616ed1e851133c42a0082"),
    (["--check-sshfp=f7:4e:5d"], "check_sshfp", "f74e5d"),
    (["--cookie=abc"], "cookie", "abc"),
    (["--tags", '{"a": 1}'], "tags", '{"a": 1}'),
    (["--tags64", base64.b64encode(b'{"b": [2]}').decode()], "tags", '{"b": [2]}'),
    (["--tags64", "e30=", "--tags", '{"c": 3}'], "tags", '{"c": 3}'),  # the last one wins
    (["-R", "/remote/logs"], "remote_log_dir", "/remote/logs"),
    (["-g", "1M"], "read_block_size", 1 << 20),
    (["-G", "256K"], "write_block_size", 256 << 10),
    (["-G", "500M"], "write_block_size", 500 << 20),
    (["-g", "4096"], "read_block_size", 4096),
    (["--symbolic-links=skip"], "symbolic_links", "skip"),
    (["--symbolic-links", "copy+force"], "symbolic_links", "copy+force"),
    (["--symbolic-links=COPY"], "symbolic_links", "copy"),
    (["--preserve-file-owner-uid"], "preserve_uid", True),
    (["--preserve-file-owner-gid"], "preserve_gid", True),
    (["--delete-before-transfer"], "delete_before_transfer", True),
    (["-v"], "debug", 1),
    # Accepted without effect (docs/PROTOCOL.md): nothing of the options changes.
    (["--preserve-creation-time"], "debug", 0),
    (["--apply-local-docroot"], "debug", 0),
    (["-u", "batch 7"], "debug", 0),
    (["-K", "100"], "debug", 0),
    (["-K", "1M"], "debug", 0),
    (["--preserve-acls=none", "--remote-preserve-acls=NONE"], "debug", 0),
    (["--preserve-xattrs", "none", "--remote-preserve-xattrs=none"], "debug", 0),
    (["--proxy=dnats://gazelle:secret@10.0.0.9:9092"], "debug", 0),
    (["-y", "0", "-j", "1", "-t", "8443", "-x", "proxy:3128", "-I", "cert.pem", "-Y", "key.pem"], "debug", 0),
]


@pytest.mark.parametrize(("extra", "name", "expected"), ONE_OPTION)
def test_each_option(extra: list[str], name: str, expected: Any) -> None:
    options = parse(*extra, "src", "dst")
    assert getattr(options, name) == expected
    changed = {
        field.name for field in dataclasses.fields(CopyOptions)
        if getattr(options, field.name) != getattr(parse("src", "dst"), field.name)
    }
    assert changed <= {name, "log_dir", "log_size"}


def test_a_bracketed_ipv6_host_is_the_address() -> None:
    from coordinator.cp.remote import route

    options = parse("--host=[fe80::21b:21ff:fe1c:5072%eth1]", "--mode=recv", "-6", "/in/a", "dst")
    assert route(options).host == "fe80::21b:21ff:fe1c:5072%eth1" and route(options).direction == "pull"
    options = parse("-6", "a", "user@[2001:0:4137:9e50:201b:63d3:ba92:da]:/path")
    assert route(options).host == "2001:0:4137:9e50:201b:63d3:ba92:da" and route(options).user == "user"


def test_source_prefix_goes_before_each_source() -> None:
    assert parse("--source-prefix=/data", "a", "sub/b", "dst").sources == ("/data/a", "/data/sub/b")
    assert parse("--source-prefix=/data/", "a", "dst").sources == ("/data/a",)
    assert parse("--source-prefix=/data", "alice@host:in/a", "dst").sources == ("alice@host:/data/in/a",)
    encoded = base64.b64encode(b"/b64").decode()
    assert parse(f"--source-prefix64={encoded}", "a", "dst").sources == ("/b64/a",)
    # The last of --source-prefix and --source-prefix64 wins.
    assert parse("--source-prefix=/x", f"--source-prefix64={encoded}", "a", "dst").sources == ("/b64/a",)
    assert parse(f"--source-prefix64={encoded}", "--source-prefix=/x", "a", "dst").source_prefix == "/x"


def test_dest64_decodes_the_destination_path() -> None:
    encoded = base64.b64encode("/in/voilà".encode()).decode()
    assert parse("--dest64", "a", encoded).destination == "/in/voilà"
    assert parse("--dest64", "a", f"alice@host:{encoded}").destination == "alice@host:/in/voilà"


def test_p_preserves_both_times() -> None:
    options = parse("-p", "a", "b")
    assert options.preserve_mtime and options.preserve_atime
    assert not options.preserve_source_atime


def test_remove_empty_source_directory_with_remove_empty_directories() -> None:
    options = parse("--remove-empty-directories", "--remove-empty-source-directory", "a", "b")
    assert options.remove_empty_directories and options.remove_empty_source_directory


def test_manifest_text_with_path() -> None:
    options = parse("--file-manifest=text", "--file-manifest-path=/tmp/m", "a", "b")
    assert options.file_manifest == "text" and options.file_manifest_path == "/tmp/m"


def test_host_and_mode() -> None:
    options = parse("--host", "h.example", "--mode=recv", "--user=u", "/remote", ".")
    assert (options.host, options.mode, options.user) == ("h.example", "recv", "u")


def test_min_rate_may_equal_target_or_be_a_percentage() -> None:
    assert parse("-l", "1M", "-m", "1000", "a", "b").min_rate == Rate(bits_per_second=1e6)
    assert parse("-l", "1M", "-m", "90%", "a", "b").min_rate == Rate(percent=90)


# ----------------------------------------------------------------------------------- filters


def test_filters_keep_left_to_right_order_across_e_and_n() -> None:
    options = parse("-N", "keep.tmp", "-E", "*.tmp", "a", "--include=x/**", "b", "-E", "-*",
                    "--exclude", "/**")
    assert options.filters == (
        ("include", "keep.tmp"),
        ("exclude", "*.tmp"),
        ("include", "x/**"),
        ("exclude", "-*"),
        ("exclude", "/**"),
    )


# --------------------------------------------------------------------------------- file lists


def test_file_list_takes_only_the_destination() -> None:
    options = parse("--file-list=list.txt", "dst")
    assert options.file_list == "list.txt" and options.file_pair_list is None
    assert options.sources == () and options.destination == "dst"
    assert options.destination_must_be_directory


def test_file_list_ignores_command_line_sources() -> None:
    options = parse("--file-list", "-", "ignored1", "ignored2", "dst")
    assert options.file_list == "-"
    assert options.sources == () and options.destination == "dst"
    assert options.ignored_sources == ("ignored1", "ignored2")


def test_last_file_list_wins() -> None:
    options = parse("--file-list=a", "--file-pair-list=b", "dst")
    assert options.file_list is None and options.file_pair_list == "b"
    options = parse("--file-pair-list=b", "--file-list=a", "dst")
    assert options.file_list == "a" and options.file_pair_list is None


# ----------------------------------------------------------------------------------- secrets


def test_password_from_environment() -> None:
    assert parse("a", "b", env={"ASPERA_SCP_PASS": "p1"}).password == "p1"
    both = {"ASPERA_SCP_PASS": "p1", "SURGE_PASS": "p2"}
    assert parse("a", "b", env=both).password == "p2"


def test_token_precedence() -> None:
    env = {"ASPERA_SCP_TOKEN": "t1"}
    assert parse("a", "b", env=env).token == "t1"
    assert parse("a", "b", env={**env, "SURGE_TOKEN": "t2"}).token == "t2"
    assert parse("-W", "t3", "a", "b", env={**env, "SURGE_TOKEN": "t2"}).token == "t3"


def test_token_from_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("Basic c2VjcmV0\n")
    assert parse("-W", f"@{token_file}", "a", "b").token == "Basic c2VjcmV0"


def test_private_key_from_the_environment_when_no_i() -> None:
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    options = parse("a", "h:b", env={"ASPERA_SCP_KEY": pem})
    assert options.key_text == pem and options.keys == ()
    assert "OPENSSH" not in repr(options)
    assert parse("a", "h:b", env={"ASPERA_SCP_KEY": "/keys/id"}).keys == ("/keys/id",)
    assert parse("a", "h:b", env={"SURGE_KEY": "/k1", "ASPERA_SCP_KEY": "/k2"}).keys == ("/k1",)
    given = parse("-i", "/mine", "a", "h:b", env={"ASPERA_SCP_KEY": pem})
    assert given.keys == ("/mine",) and given.key_text is None  # -i wins


def test_secrets_are_not_in_repr() -> None:
    options = parse("-W", "sekrit-token", "a", "b", env={"SURGE_PASS": "sekrit-pass"})
    assert options.password == "sekrit-pass" and options.token == "sekrit-token"
    assert "sekrit" not in repr(options)
    assert "sekrit" not in str(options)


def test_cookie_from_environment() -> None:
    assert parse("a", "b", env={"ASPERA_SCP_COOKIE": "c1"}).cookie == "c1"
    assert parse("--cookie=c2", "a", "b", env={"ASPERA_SCP_COOKIE": "c1"}).cookie == "c2"


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

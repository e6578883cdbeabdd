"""coordinator.cp.options: what the ascp-syntax command line of `surge cp` parses to — defaults,
positionals, each option, filters, file lists and secrets."""

from __future__ import annotations

import base64
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from common.units import Rate
from coordinator.cp.options import (
    CopyOptions,
)

sys.path.insert(0, os.path.dirname(__file__))
from cp_options_helpers import NOW, parse

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


def test_proxy_password_may_come_from_aspera_proxy_pass() -> None:
    """ASPERA_PROXY_PASS is "the password for an Aspera Proxy server": the URL may leave it out."""
    parse("--proxy=dnat://u@proxy:9091", "a", "b", env={"ASPERA_PROXY_PASS": "pw"})
    parse("--proxy=dnats://u:pw@proxy", "a", "b")
    with pytest.raises(ValueError, match=r"^--proxy: .*ASPERA_PROXY_PASS"):
        parse("--proxy=dnat://u@proxy:9091", "a", "b")

"""Tests for coordinator.sync.options: the async-syntax command line of `surge sync`."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from common import __version__
from common.filters import FilterRule
from common.units import Rate
from coordinator.sync import options as options_module
from coordinator.sync.options import (
    InfoRequest,
    OptionError,
    ShowHelp,
    ShowVersion,
    SyncOptions,
    build_parser,
    parse_sync_args,
)

NOW = 1_700_000_000.0
BASE = ("-N", "pair", "-d", "/l", "-r", "/r")


def parse_raw(*argv: str, env: dict[str, str] | None = None) -> SyncOptions:
    return parse_sync_args(list(argv), env={} if env is None else env, now=NOW)


def parse(*extra: str, env: dict[str, str] | None = None) -> SyncOptions:
    """The required options, then ``extra``."""
    return parse_raw(*BASE, *extra, env=env)


def error_of(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(OptionError) as caught:
        parse_raw(*argv, env=env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def error(*extra: str, env: dict[str, str] | None = None) -> str:
    return error_of(*BASE, *extra, env=env)


# ------------------------------------------------------------------------------------ defaults


def test_defaults_are_the_references() -> None:
    options = parse()
    assert options == SyncOptions(name="pair", local_dir="/l", remote_dir="/r")
    assert options.host is None and options.user is None  # a local-to-local sync
    assert options.direction == "push" and not options.continuous
    assert options.checksum == "sha1-sparse"
    assert options.overwrite == "always"
    assert options.dedup is None and options.filters == ()
    assert options.preserve_xattrs == options.remote_preserve_xattrs == "none"
    assert options.preserve_acls == options.remote_preserve_acls == "none"
    assert options.symbolic_links == "copy"
    assert (options.local_fs_threads, options.remote_fs_threads) == (1, 1)
    assert (options.local_checksum_threads, options.remote_checksum_threads) == (4, 4)
    assert (options.scan_threads, options.remote_scan_threads) == (1, 1)
    assert options.support_resume == 1_048_576
    assert options.resume_age_days == 5
    assert (options.cooloff, options.cooloff_max) == (3, 0)
    assert options.sharing_retry_max == 3 and options.pending_max == 2000
    assert options.scan_interval is None and options.remote_scan_interval is None
    assert options.scan_intensity == "medium" and options.transfer_threads == ()
    assert options.target_rate == Rate(bits_per_second=10_000_000)  # 10 Mbps
    assert options.min_rate == Rate(bits_per_second=200_000)  # 200 Kbps
    assert options.policy == "fair" and options.cipher == "aes128"
    assert options.compression == "none"
    assert (options.udp_port, options.ssh_port) == (33001, 22)
    assert options.datagram_size is None and options.rexmsg_size == 1440
    assert options.read_block_size == 64 << 20 and options.write_block_size == 64 << 10
    assert options.exclude_dirs_older_than is None
    assert options.exclude_dirs_older_than_text is None
    assert options.log_dir is None and options.log_size == 10 << 20 and options.debug == 0
    assert options.password is None and options.token is None and options.cookie is None
    flags = [f.name for f in dataclasses.fields(SyncOptions) if f.type in ("bool", bool)]
    assert len(flags) >= 29
    assert not any(getattr(options, name) for name in flags)


def test_bidi_defaults_to_overwrite_conflict() -> None:
    assert parse("-K", "bidi").overwrite == "conflict"
    assert parse("-K", "pull").overwrite == "always"
    direct = SyncOptions(name="x", local_dir="/a", remote_dir="/b", direction="bidi")
    assert direct.overwrite == "conflict"


def test_remote_preservation_defaults_to_the_local_mode() -> None:
    options = parse("--preserve-xattrs=metafile", "--preserve-acls=metafile")
    assert options.remote_preserve_xattrs == "metafile"
    assert options.remote_preserve_acls == "metafile"
    options = parse("--preserve-xattrs=metafile", "--remote-preserve-xattrs=none")
    assert options.remote_preserve_xattrs == "none"


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse().name = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------------ each option

ONE_OPTION: list[tuple[list[str], str, Any]] = [
    # instance options
    (["--apply-local-docroot"], "apply_local_docroot", True),
    (["-D"], "debug", 1),
    (["-DDD"], "debug", 3),
    (["-L", "/logs"], "log_dir", "/logs"),
    (["--alt-logdir=/logs:200"], "log_size", 200 << 20),
    (["-L", "c:/logs:200"], "log_dir", "c:/logs"),
    (["-L", "C:\\logs"], "log_dir", "C:\\logs"),
    (["-q"], "quiet", True),
    (["--quiet"], "quiet", True),
    (["--watchd=redis:localhost:31415"], "watchd", "redis:localhost:31415"),
    (["--watchd", "scalekv:db:6379:dom"], "watchd", "scalekv:db:6379:dom"),
    # session
    (["-K", "pull"], "direction", "pull"),
    (["--direction=BIDI"], "direction", "bidi"),
    (["-C"], "continuous", True),
    (["--continuous"], "continuous", True),
    (["-C", "--metrics-port", "9123"], "metrics_port", 9123),
    (["--create-dir"], "create_dir", True),
    (["-x"], "reset", True),
    (["--reset"], "reset", True),
    (["-b", "/db"], "local_db_dir", "/db"),
    (["--local-db-dir=/db"], "local_db_dir", "/db"),
    (["-B", "/rdb"], "remote_db_dir", "/rdb"),
    (["--remote-db-dir", "/rdb"], "remote_db_dir", "/rdb"),
    (["-R", "/rlogs:200"], "remote_log_dir", "/rlogs"),
    (["-R", "/rlogs:200"], "remote_log_size", 200 << 20),
    (["--remote-logdir=/rlogs"], "remote_log_dir", "/rlogs"),
    (["--no-log=stats"], "no_log_stats", True),
    (["--ignore_remote_host_sync_name"], "ignore_remote_host_sync_name", True),
    (["--ignore-remote-host-sync-name"], "ignore_remote_host_sync_name", True),
    (["--cookie=c1"], "cookie", "c1"),
    (["--tags", '{"a": 1}'], "tags", '{"a": 1}'),
    (["--tags64", base64.b64encode(b'{"b": 2}').decode()], "tags", '{"b": 2}'),
    (["--tags", '{"a": 1}', "--tags64", base64.b64encode(b'{"b": 2}').decode()], "tags",
     '{"b": 2}'),
    (["--file-manifest-path", "/m"], "file_manifest_path", "/m"),
    # what to synchronise
    (["--include", "*.jpg"], "filters", (FilterRule("include", "*.jpg", "--include"),)),
    (["--exclude=*.tmp"], "filters", (FilterRule("exclude", "*.tmp", "--exclude"),)),
    (["--exclude", "-tmp"], "filters", (FilterRule("exclude", "-tmp", "--exclude"),)),
    (["--exclude-dirs-older-than", "1400000000"], "exclude_dirs_older_than", 1_400_000_000),
    (["--exclude-dirs-older-than=1w0d0h0m0s"], "exclude_dirs_older_than_text", "1w0d0h0m0s"),
    (["-k", "md5"], "checksum", "md5"),
    (["--checksum=none"], "checksum", "none"),
    (["-k", "MD5-Sparse"], "checksum", "md5-sparse"),
    (["-o", "older"], "overwrite", "older"),
    (["--overwrite", "conflict"], "overwrite", "conflict"),
    (["--mirror"], "mirror", True),
    (["--ignore-delete"], "ignore_delete", True),
    (["--delete-before"], "delete_before", True),
    (["--delete-delay"], "delete_delay", True),
    (["--keep-dir-local=/k"], "keep_dir_local", "/k"),
    (["--keep-dir-remote", "/kr"], "keep_dir_remote", "/kr"),
    (["--remove-after-transfer"], "remove_after_transfer", True),
    (["--assume-no-mods"], "assume_no_mods", True),
    (["--scan-file-rename"], "scan_file_rename", True),
    (["--scan-dir-rename"], "scan_dir_rename", True),
    (["--dedup", "-k", "sha1"], "dedup", "hardlink"),
    (["--dedup=copy", "-k", "md5"], "dedup", "copy"),
    (["--dedup=inode", "-k", "sha1"], "dedup", "inode"),
    (["-t"], "preserve_mtime", True),
    (["--preserve-time"], "preserve_mtime", True),
    (["--preserve-modification-time"], "preserve_mtime", True),
    (["--preserve-access-time"], "preserve_atime", True),
    (["--preserve-creation-time"], "preserve_ctime", True),
    (["-u"], "preserve_uid", True),
    (["--preserve-uid"], "preserve_uid", True),
    (["-j"], "preserve_gid", True),
    (["--preserve-gid"], "preserve_gid", True),
    (["--write-uid=bob"], "write_uid", "bob"),
    (["--write-gid", "100"], "write_gid", "100"),
    (["--preserve-xattrs=metafile"], "preserve_xattrs", "metafile"),
    (["--remote-preserve-xattrs", "metafile"], "remote_preserve_xattrs", "metafile"),
    (["--preserve-acls=metafile"], "preserve_acls", "metafile"),
    (["--remote-preserve-acls=none"], "remote_preserve_acls", "none"),
    (["--preserve-object-lock-legal-hold"], "preserve_object_lock_legal_hold", True),
    (["--preserve-object-lock-retention"], "preserve_object_lock_retention", True),
    (["--ignore-mode"], "ignore_mode", True),
    (["--no-preserve-root-attrs"], "no_preserve_root_attrs", True),
    (["--store-metadata-records"], "store_metadata_records", True),
    (["--clean-excluded"], "clean_excluded", True),
    (["-n", "skip"], "symbolic_links", "skip"),
    (["--symbolic-links=follow"], "symbolic_links", "follow"),
    (["--local-mount-signature", "/sig"], "local_mount_signature", "/sig"),
    (["--remote-mount-signature=/rsig"], "remote_mount_signature", "/rsig"),
    # scanning and transfer
    (["--local-fs-threads=3"], "local_fs_threads", 3),
    (["--remote-fs-threads", "5"], "remote_fs_threads", 5),
    (["--local-checksum-threads=2"], "local_checksum_threads", 2),
    (["--remote-checksum-threads=8"], "remote_checksum_threads", 8),
    (["--scan-threads=6"], "scan_threads", 6),
    (["--remote-scan-threads", "7"], "remote_scan_threads", 7),
    (["--cooloff=0"], "cooloff", 0),
    (["--cooloff", "60"], "cooloff", 60),
    (["--cooloff-max=30"], "cooloff_max", 30),
    (["--sharing-retry-max=0"], "sharing_retry_max", 0),
    (["--pending-max=10000"], "pending_max", 10_000),
    (["--resume-age-days", "9"], "resume_age_days", 9),
    (["--support-resume=2M"], "support_resume", 2 << 20),
    (["--support-resume", "4096"], "support_resume", 4096),
    (["--support-resume", "-q"], "support_resume", 1_048_576),
    (["--scan-interval=1h30m"], "scan_interval", 5400),
    (["--remote-scan-interval", "4h"], "remote_scan_interval", 14_400),
    (["--remote-scan-interval", "1d 02:00:00"], "remote_scan_interval", 93_600),
    (["--no-scan", "-C"], "no_scan", True),
    (["--local-force-stat"], "local_force_stat", True),
    (["--remote-force-stat"], "remote_force_stat", True),
    (["-H", "vhigh"], "scan_intensity", "vhigh"),
    (["--scan-intensity=vlow"], "scan_intensity", "vlow"),
    (["--transfer-threads=2:128", "--transfer-threads=6"], "transfer_threads",
     ((2, 128), (6, None))),
    (["--transfer-threads", "2:100K"], "transfer_threads", ((2, 100 << 10),)),
    (["-l", "500m"], "target_rate", Rate(bits_per_second=500_000_000)),
    (["--target-rate=1G"], "target_rate", Rate(bits_per_second=1_000_000_000)),
    (["-l", "2000"], "target_rate", Rate(bits_per_second=2000)),  # a bare number is bps
    (["-l", "300Kbps"], "target_rate", Rate(bits_per_second=300_000)),
    (["-m", "1m"], "min_rate", Rate(bits_per_second=1_000_000)),
    (["--min-rate=0"], "min_rate", Rate(bits_per_second=0)),
    (["-a", "fixed"], "policy", "fixed"),
    (["--rate-policy=low"], "policy", "low"),
    (["-c", "none"], "cipher", "none"),
    (["--cipher=AES-256-GCM"], "cipher", "aes256gcm"),
    (["-c", "aes192cfb"], "cipher", "aes192cfb"),
    (["--compression=zlib"], "compression", "zlib"),
    (["-O", "33002"], "udp_port", 33002),
    (["--udp-port=4000"], "udp_port", 4000),
    (["-P", "2222"], "ssh_port", 2222),
    (["--tcp-port=33001"], "ssh_port", 33001),
    (["-i", "/k1", "--private-key-path=/k2"], "keys", ("/k1", "/k2")),
    (["--check-sshfp=AA:bb:0c"], "check_sshfp", "aabb0c"),
    (["--proxy=dnats://u:pw@proxy.example:9092"], "proxy", "dnats://u:pw@proxy.example:9092"),
    (["-Z", "1400"], "datagram_size", 1400),
    (["--datagram-size=9000"], "datagram_size", 9000),
    (["-X", "500"], "rexmsg_size", 500),
    (["--rexmsg-size=1440"], "rexmsg_size", 1440),
    (["-g", "1M"], "read_block_size", 1 << 20),
    (["--read-block-size=512K"], "read_block_size", 512 << 10),
    (["-G", "16M"], "write_block_size", 16 << 20),
    (["--write-block-size=128K"], "write_block_size", 128 << 10),
    (["--raw-options", "-L", "--raw-options", "/tmp"], "raw_options", ("-L", "/tmp")),
    (["-w", "secret"], "password", "secret"),
    (["--pass=secret"], "password", "secret"),
    (["-W", "tok"], "token", "tok"),
    (["--token", "tok"], "token", "tok"),
    (["--user", "u", "-r", "hx:/x"], "user", "u"),
    (["--host", "h"], "host", "h"),
    (["--cluster", "redis://r:6379/0"], "cluster", "redis://r:6379/0"),
    (["--cluster", "--detach"], "detach", True),
    (["--cluster=redis://r/0", "--multi-session-threshold=1G"], "multi_session_threshold", 1 << 30),
]

# Options with dedicated tests below rather than rows of ONE_OPTION.
TESTED_ELSEWHERE = {"-h", "--help", "-A", "--version", "-N", "--name", "-d", "--local-dir",
                    "-r", "--remote-dir", "-I", "--include-from", "-E", "--exclude-from",
                    "--remote-preserve-acles"}  # test_the_first_example_of_the_reference_parses


@pytest.mark.parametrize(("argv", "attribute", "expected"), ONE_OPTION,
                         ids=[" ".join(row[0]) for row in ONE_OPTION])
def test_one_option(argv: list[str], attribute: str, expected: Any) -> None:
    assert getattr(parse(*argv), attribute) == expected


def test_every_option_of_the_parser_has_a_test() -> None:
    covered = {word.split("=", 1)[0] for argv, _, _ in ONE_OPTION for word in argv
               if word.startswith("-")}
    covered |= {word[:2] for argv, _, _ in ONE_OPTION for word in argv
                if len(word) > 2 and word[0] == "-" and word[1] != "-"}  # -DDD
    every = {name for action in build_parser()._actions for name in action.option_strings}
    assert every - covered - TESTED_ELSEWHERE == set()
    for name in ("--ignore_remote_host_sync_name", "--alt-logdir", "--private-key-path", "--remote-preserve-acles",
                 "--tcp-port", "--rate-policy", "--remote-logdir", "--tags64"):
        assert name in every


def test_the_first_example_of_the_reference_parses() -> None:
    """001's first example, its misspelt --remote-preserve-acles included (the host part made
    plain: the example's remote directory is a Windows path)."""
    options = parse_raw("-L", "/sync/logs", "-N", "backup", "-d", "/sync/backup", "-r",
                        "alligator@everglades.company.com:/data/", "-i", "/.ssh/lion_private_key",
                        "-K", "pull", "--remote-scan-interval=4h", "--preserve-acls=metafile",
                        "--remote-preserve-acles=metafile", "-C",
                        "--exclude-dirs-older-than=1w0d0h0m0s")  # fmt: skip
    assert options.remote_preserve_acls == options.preserve_acls == "metafile"
    assert options.remote_scan_interval == 4 * 3600 and options.continuous
    assert (options.user, options.host, options.direction) == ("alligator", "everglades.company.com", "pull")


def test_the_second_example_of_the_reference_parses() -> None:
    options = parse_raw("-L", "c:/logs:200", "-q", "-N", "small-files", "-c", "none", "--pending-max=10000",
                        "--transfer-threads=4", "-R", "c:/logs:200", "-d", "c:/data/", "-r",
                        "bobcat@host:/data/", "-K", "push", "-l", "500m")  # fmt: skip
    assert (options.log_dir, options.log_size, options.remote_log_size) == ("c:/logs", 200 << 20, 200 << 20)
    assert options.pending_max == 10000 and options.cipher == "none" and options.transfer_threads == ((4, None),)
    assert options.target_rate.bits_per_second == 500_000_000


def test_the_third_example_of_the_reference_parses() -> None:
    options = parse_raw("-L", "/sync/logs", "-q", "-N", "sync-2017-01-01", "--user=gazelle@company.com",
                        "--host=10.0.0.2", "-r", "Library/daimages", "-d", "/images",
                        "-i", "/lion/.ssh/lion_private_key", "-R", "Library/sync/logs",
                        "--transfer-threads=2:100000", "-K", "bidi")  # fmt: skip
    assert (options.user, options.host, options.remote_dir) == ("gazelle@company.com", "10.0.0.2", "Library/daimages")
    assert options.transfer_threads == ((2, 100000),) and options.overwrite == "conflict"


def test_required_options_long_forms_and_attached_values() -> None:
    options = parse_raw("--name=pair", "--local-dir", "/l", "--remote-dir=/r")
    assert (options.name, options.local_dir, options.remote_dir) == ("pair", "/l", "/r")
    options = parse_raw("-Npair", "-d/l", "-r/r", "-tuj")
    assert (options.name, options.local_dir, options.remote_dir) == ("pair", "/l", "/r")
    assert options.preserve_mtime and options.preserve_uid and options.preserve_gid


def test_a_value_may_start_with_a_dash() -> None:
    options = parse_raw("-N", "pair", "-d", "-local", "-r", "-remote")
    assert (options.local_dir, options.remote_dir) == ("-local", "-remote")


def test_exclude_dirs_older_than_forms() -> None:
    def older(text: str) -> float | None:
        return parse("--exclude-dirs-older-than", text).exclude_dirs_older_than

    assert older("1400000000") == 1_400_000_000
    assert older("2015-01-01T08:00:00") == 1_420_099_200
    assert older("1d 0:0:0") == NOW - 86_400
    assert older("24:00:00") == NOW - 86_400
    assert older("24h 00m 00s") == NOW - 86_400
    assert older("1w0d0h0m0s") == NOW - 7 * 86_400
    assert parse("--exclude-dirs-older-than", "24:00:00").exclude_dirs_older_than_text == \
        "24:00:00"


def test_rates_without_m_follow_a_low_l() -> None:
    options = parse("-l", "100k")
    assert options.min_rate == Rate(bits_per_second=100_000) == options.target_rate
    assert parse("-l", "100k", "-m", "50k").min_rate == Rate(bits_per_second=50_000)


# ---------------------------------------------------------------------------- remote forms

REMOTE_FORMS: list[tuple[list[str], tuple[str | None, str | None, str]]] = [
    (["-r", "bob@host.example:/rdir"], ("bob", "host.example", "/rdir")),
    (["--user", "bob", "-r", "host.example:/rdir"], ("bob", "host.example", "/rdir")),
    (["--user", "bob", "--host", "h", "-r", "/rdir"], ("bob", "h", "/rdir")),
    (["-r", "host.example:/rdir"], ("me", "host.example", "/rdir")),  # $USER
    (["--host", "h", "-r", "/rdir"], ("me", "h", "/rdir")),
    (["-r", "/rdir", "--user=bob", "--host=h"], ("bob", "h", "/rdir")),
    (["--host=[fe80::1]", "-r", "/rdir"], ("me", "fe80::1", "/rdir")),  # the reference writes v6 in brackets
    (["--user=g@company.com", "--host=h", "-r", "Library/images"],
     ("g@company.com", "h", "Library/images")),
    (["--host", "h", "-r", "a@b:/c"], ("me", "h", "a@b:/c")),  # '@' ':' are plain
    (["-r", "lion@everglades.example:C:\\data\\"], ("lion", "everglades.example", "C:\\data\\")),
    (["-r", "u@[::1]:/rdir"], ("u", "::1", "/rdir")),
    (["-r", "C:/rdir"], (None, None, "C:/rdir")),  # a Windows drive, not host C
    (["-r", "/local/dir"], (None, None, "/local/dir")),
    (["-r", "/data/a:b"], (None, None, "/data/a:b")),
    (["-r", "/data/me@example.com"], (None, None, "/data/me@example.com")),
    (["--host", "A", "-r", "/rdir"], ("me", "A", "/rdir")),
]


@pytest.mark.parametrize(("argv", "expected"), REMOTE_FORMS,
                         ids=[" ".join(row[0]) for row in REMOTE_FORMS])
def test_remote_dir_forms(argv: list[str], expected: tuple[str | None, str | None, str]) -> None:
    options = parse_raw("-N", "pair", "-d", "/l", *argv, env={"USER": "me"})
    assert (options.user, options.host, options.remote_dir) == expected


@pytest.mark.parametrize(("argv", "expected"), [
    (["-r", "u@:/rdir"], "-r: empty host"),
    (["-r", "@hh:/rdir"], "-r: empty user"),
    (["-r", "host:"], "-r: empty remote directory"),
    (["--user", "u", "-r", "v@h:/rdir"], "-r: give the user either"),
    (["-r", "u@A:/rdir"], "--host=A"),
    (["--user", "u", "-r", "/local"], "--user: needs a remote host"),
    (["--host=", "-r", "/rdir"], "--host: invalid host name"),
    (["--host", "a b", "-r", "/rdir"], "--host: invalid host name"),
    (["-r", ""], "-r: empty directory"),
    (["-r", "/a\nb"], "-r: a directory must not contain"),
])
def test_bad_remote_dirs(argv: list[str], expected: str) -> None:
    assert expected in error_of("-N", "pair", "-d", "/l", *argv)


# --------------------------------------------------------------------------- required, -N


def test_missing_required_options() -> None:
    assert error_of("-d", "/l", "-r", "/r").startswith("-N: required")
    assert error_of("-N", "pair", "-r", "/r").startswith("-d: required")
    assert error_of("-N", "pair", "-d", "/l").startswith("-r: required")
    assert error_of("-N", "pair", "-d", "", "-r", "/r").startswith("-d: empty")
    assert error_of("-N").startswith("-N/--name: expected one argument")


@pytest.mark.parametrize("before", [["-d", "/l"], ["-K", "pull"], ["--exclude", "x"],
                                    ["-l", "1M"], ["--mirror"], ["-x"]])
def test_session_options_before_n_are_an_error(before: list[str]) -> None:
    message = error_of(*before, "-N", "pair", "-d", "/l", "-r", "/r")
    assert message.startswith("-N: must precede all session options")
    assert before[0] in message


def test_instance_options_may_precede_n() -> None:
    options = parse_raw("-L", "/logs:200", "-q", "-DD", "--apply-local-docroot",
                        "--watchd=redis:localhost:31415", *BASE)
    assert options.log_dir == "/logs" and options.quiet and options.debug == 2
    assert options.apply_local_docroot and options.watchd == "redis:localhost:31415"


@pytest.mark.parametrize("name", ["sync-2017_01", "a", "UPPER-lower_09", "x" * 255])
def test_good_names(name: str) -> None:
    assert parse_raw("-N", name, "-d", "/l", "-r", "/r").name == name


@pytest.mark.parametrize("name", ["a b", "a.b", "é", "a/b", "", "x" * 256, "a:b", "ü-x"])
def test_bad_names(name: str) -> None:
    assert error_of("-N", name, "-d", "/l", "-r", "/r").startswith("-N: invalid session name")


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


# ---------------------------------------------------------------------------------- filters


def test_rule_files_keep_command_line_order(tmp_path: Path) -> None:
    include = tmp_path / "inc.txt"
    include.write_text("*.jpg\n- *.bak\n")
    exclude = tmp_path / "exc.txt"
    exclude.write_text("# comment\ntmp/\n")
    options = parse("--include", "keep", "-I", str(include), "--exclude=x",
                    "--exclude-from", str(exclude), "-E", str(exclude), "--include-from",
                    str(include))
    assert [(rule.kind, rule.pattern) for rule in options.filters] == [
        ("include", "keep"), ("include", "*.jpg"), ("exclude", "*.bak"), ("exclude", "x"),
        ("exclude", "tmp/"), ("exclude", "tmp/"), ("include", "*.jpg"), ("exclude", "*.bak")]
    assert options.filters[1].origin == f"{include}:1"


@pytest.mark.parametrize("option", ["-I", "--include-from", "-E", "--exclude-from"])
def test_unreadable_rule_file(tmp_path: Path, option: str) -> None:
    missing = tmp_path / "missing.txt"
    message = error(option, str(missing))
    assert message.startswith(f"{option}: ")
    assert str(missing) in message
    message = error(option, str(tmp_path))  # a directory
    assert message.startswith(f"{option}: ") and str(tmp_path) in message


def test_bad_pattern_on_the_command_line_and_in_a_file(tmp_path: Path) -> None:
    assert error("--exclude", "[abc").startswith("--exclude: ")
    assert error("--include=a[").startswith("--include: ")
    rules = tmp_path / "rules.txt"
    rules.write_text("ok\n[bad\n")
    message = error("-E", str(rules))
    assert f"{rules}:2" in message


# ---------------------------------------------------------------------------------- secrets


def test_secrets_come_from_the_environment() -> None:
    options = parse(env={"ASPERA_SCP_PASS": "p1", "ASPERA_SCP_TOKEN": "t1",
                         "ASPERA_SCP_COOKIE": "c1"})
    assert (options.password, options.token, options.cookie) == ("p1", "t1", "c1")
    options = parse(env={"SURGE_PASS": "p2", "ASPERA_SCP_PASS": "p1", "SURGE_TOKEN": "t2"})
    assert (options.password, options.token) == ("p2", "t2")
    options = parse("-w", "p3", "-W", "t3", "--cookie=c3",
                    env={"ASPERA_SCP_PASS": "p1", "ASPERA_SCP_TOKEN": "t1",
                         "ASPERA_SCP_COOKIE": "c1"})
    assert (options.password, options.token, options.cookie) == ("p3", "t3", "c3")


def test_too_long_environment_values_are_errors() -> None:
    assert error(env={"ASPERA_SCP_PASS": "x" * 4097}).startswith("ASPERA_SCP_PASS: longer")
    assert parse(env={"ASPERA_SCP_PASS": "x" * 4096}).password == "x" * 4096


def test_secrets_are_not_in_repr() -> None:
    options = parse("-w", "pw-secret", "-W", "token-secret",
                    "--proxy=dnat://u:proxy-secret@proxy")
    text = repr(options)
    assert "pw-secret" not in text and "token-secret" not in text
    assert "proxy-secret" not in text
    assert options.password == "pw-secret" and options.token == "token-secret"
    assert "local_dir='/l'" in text  # repr works, only the secrets are left out


# ---------------------------------------------------------------------------- help, version


def test_help_and_version() -> None:
    with pytest.raises(ShowHelp) as shown:
        parse_raw("-h")
    assert "--exclude-dirs-older-than" in shown.value.text and "ASPERA_SCP_PASS" in shown.value.text
    with pytest.raises(ShowHelp):
        parse_raw("-K", "pull", "--help")  # before the ordering check
    with pytest.raises(ShowVersion) as version:
        parse_raw("-A")
    assert __version__ in version.value.text and version.value.text.startswith("surge sync")
    with pytest.raises(InfoRequest):
        parse_raw("--version")

"""coordinator.sync.options, option by option: the reference's defaults, and a table of every
option of the async-syntax parser with the attribute it sets."""

from __future__ import annotations

import base64
import dataclasses
import os
import sys
from typing import Any

import pytest

from common.filters import FilterRule
from common.units import Rate
from coordinator.sync.options import (
    SyncOptions,
    build_parser,
)

sys.path.insert(0, os.path.dirname(__file__))
from sync_options_helpers import parse

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
    (["-L", "C:\\logs"], "log_dir", "C:/logs"),
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

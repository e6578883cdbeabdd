"""coordinator.sync.options, whole command lines: the reference's examples, value and remote
directory forms, required options and -N, rule files, secrets and help/version."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from common import __version__
from common.units import Rate
from coordinator.sync.options import (
    InfoRequest,
    ShowHelp,
    ShowVersion,
)

sys.path.insert(0, os.path.dirname(__file__))
from sync_options_helpers import BASE, NOW, error, error_of, parse, parse_raw


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
    (["-r", "lion@everglades.example:C:\\data\\"], ("lion", "everglades.example", "C:/data/")),
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


def test_backslash_is_a_path_separator_of_the_directory_options() -> None:
    """The reference: "\\" is a platform-independent path separator for -d/r/L/R/B/b and
    --keep-dir-local/remote (and only for them: in filter rules it quotes)."""
    options = parse_raw("-L", "\\sync\\logs:200", "-N", "pair", "-d", "\\sync\\backup",
                        "-r", "\\sync\\mirror", "-R", "C:\\logs", "-b", "\\db\\local",
                        "-B", "db\\remote", "--keep-dir-local=\\keep\\l",
                        "--keep-dir-remote", "\\keep\\r", "--exclude", "a\\*b")  # fmt: skip
    assert (options.local_dir, options.remote_dir) == ("/sync/backup", "/sync/mirror")
    assert (options.log_dir, options.log_size, options.remote_log_dir) == ("/sync/logs", 200 << 20, "C:/logs")
    assert (options.local_db_dir, options.remote_db_dir) == ("/db/local", "db/remote")
    assert (options.keep_dir_local, options.keep_dir_remote) == ("/keep/l", "/keep/r")
    assert options.filters[0].pattern == "a\\*b"
    remote = parse_raw("-N", "pair", "-d", "/l", "-r", "lion@host.example:C:\\data\\", env={})
    assert (remote.host, remote.remote_dir) == ("host.example", "C:/data/")


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

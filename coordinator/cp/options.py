"""The command line of ``surge cp``: ascp syntax in, one validated :class:`CopyOptions` out.

:func:`parse_cp_args` is the only entry point that reads the environment (passwords, tokens,
cookies) and the clock (relative mtime bounds); everything below it gets a frozen dataclass.

Errors raise :class:`OptionError` with a one-line message that starts with the option at fault;
the CLI prints ``surge cp: error: <message>`` and exits 2. ``-h``/``--help`` and
``-A``/``--version`` raise :class:`ShowHelp`/:class:`ShowVersion` (both :class:`InfoRequest`)
carrying the text to print; the CLI prints it and exits 0. Nothing here prints or exits.

Choices where the ascp reference is silent or loose, so that they are easy to find:

* Like ascp's getopt, an option that takes a value takes the next word even if it starts with
  ``-`` (``--exclude-newer-than -3600``, ``-E -tmp``).
* Of ``--file-list``/``--file-pair-list`` the last one given wins, as the reference says; the same
  for ``--tags``/``--tags64``. Sources given next to a list are ignored, as the reference says,
  and reported in :attr:`CopyOptions.ignored_sources` so the CLI can warn.
* ``--host`` and ``--mode`` each require the other (the reference states both directions).
* ``--remove-empty-source-directory`` is "for use with ``--remove-empty-directories``"; alone it
  is an error rather than silently doing nothing.
* ``-@`` is for a single file: an error with several sources, with a file list, or with ``-k``>0.
* ``-m`` above ``-l`` is an error when both are absolute, counting ``-l``'s default of 10 Mbps.
* ``-T`` together with a ``-c`` other than ``none`` is an error.
* ``-L dir:size`` takes the size in bytes with optional K/M/G suffix (``-L /var/log:20M``); a
  single-letter head (``C:\\logs``) is a Windows drive, not a size.
* ``--tags`` must be a JSON object of at most 4096 bytes (for ``--tags64``, once decoded).
* Cipher spellings are normalised: ``AES-128``, ``aes_256_gcm`` -> ``aes128``, ``aes256gcm``;
  checksums to the reference's spelling: ``sha256`` -> ``sha-256``.
* ``-E``/``-N`` patterns are compiled here, so a bad one is a usage error before anything runs.
* Sources and destinations that are URIs (``s3://``, ``stdio://``...) are refused: Surge reads
  and writes local paths, ``[user@]host:path`` and ``faux://`` only.
* ``--source-prefix`` is joined to each source with one ``/`` between them when neither has it.
* ``--delete-before-transfer`` takes one source (the reference: not with several sources).
* ``ASPERA_SCP_KEY`` (or ``SURGE_KEY``) stands in for ``-i`` when no ``-i`` is given: the
  private key itself (PEM or OpenSSH text), or the path of a key file.
* Options for features Surge lacks are accepted without effect or refused:
  :mod:`coordinator.cp._inapplicable`.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.filters import FilterError, FilterRule, compile_filters
from common.units import Rate, UnitError, format_bytes, parse_mtime_bound, parse_rate, parse_size
from coordinator.optcommon import (
    CIPHERS,
    MAX_TAGS_BYTES,
    POLICIES,
    InfoRequest,
    OptionError,
    ShowHelp,
    ShowVersion,
)

from . import _inapplicable
from . import _values as conv
from ._parser import Parser, build_parser
from ._values import DEFAULT_LOG_SIZE, MAX_TOKEN_FILE_BYTES

__all__ = [
    "CHECKSUMS",
    "CIPHERS",
    "DEFAULT_MIN_RATE",
    "DEFAULT_TARGET_RATE",
    "MANIFESTS",
    "MAX_BLOCK_SIZE",
    "MAX_TAGS_BYTES",
    "MAX_TOKEN_FILE_BYTES",
    "MODES",
    "OVERWRITE_POLICIES",
    "POLICIES",
    "CopyOptions",
    "InfoRequest",
    "OptionError",
    "ShowHelp",
    "ShowVersion",
    "build_parser",
    "parse_cp_args",
]

DEFAULT_TARGET_RATE = Rate(bits_per_second=10_000_000.0)  # -l default: 10000 Kbps
DEFAULT_MIN_RATE = Rate(bits_per_second=0.0)  # -m default: 0
OVERWRITE_POLICIES = ("never", "always", "diff", "diff+older", "older")
CHECKSUMS = ("none", "md5", "sha1", "sha-256", "sha-384", "sha-512")
MANIFESTS = ("none", "text")
MODES = ("send", "recv")
MAX_BLOCK_SIZE = 500 << 20  # -g/-G: "Range: up to 500 MB"
MAX_MULTI_SESSION = 128  # -C: nodeid and nodecount 1-128
DATAGRAM_RANGE = (296, 65535)  # -Z
MAX_REXMSG_SIZE = 1440  # -X maximum and default
SYMLINK_METHODS = ("follow", "copy", "copy+force", "skip")
MIN_REXMSG_SIZE = 98  # one retransmission range with its header and tag (deliberate: the reference sets no minimum)


def _check_range(option: str, what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise OptionError(f"{option}: {what} {value} out of range {low}..{high}")


def _check_choice(option: str, what: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise OptionError(
            f"{option}: unknown {what} {value!r}: expected one of " + ", ".join(choices)
        )


@dataclass(frozen=True)
class CopyOptions:
    """Everything ``surge cp`` was asked to do; defaults are ascp's. Validated on creation."""

    sources: tuple[str, ...]
    destination: str
    file_list: str | None = None
    file_pair_list: str | None = None
    src_base: str | None = None
    create_dir: bool = False
    filters: tuple[tuple[str, str], ...] = ()  # ("exclude"|"include", pattern), in order
    preserve_mtime: bool = False
    preserve_atime: bool = False
    preserve_source_atime: bool = False
    remove_after_transfer: bool = False
    move_after_transfer: str | None = None
    remove_empty_directories: bool = False
    remove_empty_source_directory: bool = False
    skip_special_files: bool = False
    save_before_overwrite: bool = False
    exclude_newer_than: float | None = None  # absolute epoch seconds
    exclude_older_than: float | None = None
    precalculate_job_size: bool = False
    resume: int = 0
    byte_range: tuple[int | None, int | None] | None = None  # first, last byte; None: file end
    overwrite: str = "diff"
    target_rate: Rate = DEFAULT_TARGET_RATE
    min_rate: Rate = DEFAULT_MIN_RATE
    policy: str | None = None  # None: the server's policy (fair by default)
    cipher: str = "aes128"
    datagram_size: int | None = None  # None: the path MTU
    rexmsg_size: int = MAX_REXMSG_SIZE
    udp_port: int = 33001
    ssh_port: int = 22
    user: str | None = None
    host: str | None = None
    mode: str | None = None
    keys: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    key_text: str | None = field(default=None, repr=False)  # ASPERA_SCP_KEY holding the key itself
    ipv6: bool = False
    multi_session: tuple[int, int] | None = None  # (nodeid, nodecount)
    multi_session_threshold: int = 0
    file_checksum: str = "none"
    file_manifest: str = "none"
    file_manifest_path: str | None = None
    file_manifest_inprogress_suffix: str = ".aspera-inprogress"
    partial_file_suffix: str = ""  # empty: partial files are not used
    quiet: bool = False
    log_dir: str | None = None
    log_size: int = DEFAULT_LOG_SIZE
    debug: int = 0
    check_sshfp: str | None = None
    cookie: str | None = None
    tags: str | None = None  # JSON text of a JSON object
    remote_log_dir: str | None = None
    remote_command: str = "surge agent"  # -S: the program the far end runs
    read_block_size: int | None = None
    write_block_size: int | None = None
    destination_must_be_directory: bool = False  # several sources, or a file list
    ignored_sources: tuple[str, ...] = ()  # command-line sources next to a file list
    source_prefix: str | None = None  # already on `sources`; put before file-list entries
    symbolic_links: str = "follow"
    preserve_uid: bool = False
    preserve_gid: bool = False
    delete_before_transfer: bool = False

    def __post_init__(self) -> None:
        self._check_values()
        self._check_combinations()

    def _check_values(self) -> None:
        if not self.destination:
            raise OptionError("missing destination: expected SOURCE... DESTINATION")
        if any(not source for source in self.sources):
            raise OptionError("empty source argument")
        _check_range("-k", "resume level", self.resume, 0, 3)
        _check_choice("--overwrite", "overwrite policy", self.overwrite, OVERWRITE_POLICIES)
        _check_choice("--policy", "policy", self.policy, POLICIES)
        _check_choice("-c", "cipher", self.cipher, CIPHERS)
        _check_choice("--mode", "mode", self.mode, MODES)
        _check_choice("--file-checksum", "checksum", self.file_checksum, CHECKSUMS)
        _check_choice("--file-manifest", "manifest type", self.file_manifest, MANIFESTS)
        _check_choice("--symbolic-links", "method", self.symbolic_links, SYMLINK_METHODS)
        for path in (*self.sources, self.destination):
            _check_not_uri(path)
        _check_filters(self.filters)
        if self.datagram_size is not None:
            _check_range("-Z", "datagram size", self.datagram_size, *DATAGRAM_RANGE)
        _check_range(
            "-X", "retransmission request size", self.rexmsg_size, MIN_REXMSG_SIZE, MAX_REXMSG_SIZE
        )
        _check_range("-O", "UDP port", self.udp_port, 1, 65535)
        _check_range("-P", "SSH port", self.ssh_port, 1, 65535)
        if self.multi_session is not None:
            node_id, node_count = self.multi_session
            _check_range("-C", "node count", node_count, 1, MAX_MULTI_SESSION)
            _check_range("-C", "node id", node_id, 1, node_count)
        if self.multi_session_threshold < 0:
            raise OptionError("--multi-session-threshold: must not be negative")
        if self.log_size <= 0:
            raise OptionError("-L: log size must be positive")
        if self.debug < 0:
            raise OptionError("-D: debug level must not be negative")
        for option, size in (("-g", self.read_block_size), ("-G", self.write_block_size)):
            if size is not None and not 1 <= size <= MAX_BLOCK_SIZE:
                raise OptionError(
                    f"{option}: block size {size} out of range 1 B..{format_bytes(MAX_BLOCK_SIZE)}"
                )
        if not (self.target_rate.bits_per_second or self.target_rate.percent):
            raise OptionError("-l: target rate must be greater than zero")

    def _check_combinations(self) -> None:
        listed = self.file_list is not None or self.file_pair_list is not None
        if not self.sources and not listed:
            raise OptionError(
                "missing source: expected SOURCE... DESTINATION (or --file-list/--file-pair-list)"
            )
        if self.file_list is not None and self.file_pair_list is not None:
            raise OptionError("--file-list: cannot be combined with --file-pair-list")
        if self.byte_range is not None:
            self._check_byte_range(listed)
        if self.remove_after_transfer and self.move_after_transfer is not None:
            raise OptionError(
                "--move-after-transfer: cannot be combined with --remove-after-transfer"
            )
        if self.remove_empty_source_directory and not self.remove_empty_directories:
            raise OptionError(
                "--remove-empty-source-directory: requires --remove-empty-directories"
            )
        if self.file_manifest == "text" and not self.file_manifest_path:
            raise OptionError("--file-manifest: 'text' requires --file-manifest-path")
        if self.mode is not None and not self.host:
            raise OptionError("--mode: requires --host")
        if self.host is not None and self.mode is None:
            raise OptionError("--host: requires --mode (send or recv)")
        if self.delete_before_transfer and (len(self.sources) > 1 or listed):
            raise OptionError("--delete-before-transfer: takes one source directory, not several sources "
                              "or a file list")  # fmt: skip
        target, minimum = self.target_rate, self.min_rate
        if (
            target.bits_per_second is not None
            and minimum.bits_per_second is not None
            and minimum.bits_per_second > target.bits_per_second
        ):
            raise OptionError(f"-m: minimum rate {minimum} is above the target rate {target} (-l)")

    def _check_byte_range(self, listed: bool) -> None:
        assert self.byte_range is not None
        start, end = self.byte_range
        if (start is not None and start < 0) or (end is not None and end < 0):
            raise OptionError("-@: byte positions must not be negative")
        if start is not None and end is not None and start > end:
            raise OptionError(f"-@: range start {start} is after range end {end}")
        if len(self.sources) > 1 or listed:
            raise OptionError(
                "-@: transfers part of a single file; not with several sources or a file list"
            )
        if self.resume > 0:
            raise OptionError(f"-@: does not support resume; drop -k {self.resume}")


def _check_not_uri(path: str) -> None:
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", path)
    if scheme and scheme[1].lower() != "faux":
        raise OptionError(f"{path[:60]}: {scheme[1]}:// URIs (cloud storage, stdio) are not supported; "
                          "use a local path, [user@]host:path or faux://")  # fmt: skip


def _check_filters(filters: tuple[tuple[str, str], ...]) -> None:
    rules = [FilterRule("exclude" if kind == "exclude" else "include", pattern, "-E" if kind == "exclude" else "-N")
             for kind, pattern in filters]  # fmt: skip
    try:
        compile_filters(rules)
    except FilterError as error:
        raise OptionError(str(error)) from None


def parse_cp_args(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, now: float | None = None
) -> CopyOptions:
    """Parse ``surge cp`` arguments (without the ``surge cp`` words themselves).

    ``env`` defaults to :data:`os.environ`, ``now`` (for negative mtime bounds) to the clock.
    Raises :class:`OptionError` for a bad command line and :class:`InfoRequest` for -h/-A.
    """
    parser = build_parser()
    assert isinstance(parser, Parser)
    words, after_dashes = parser.split_argv(argv)
    ns, extras = parser.parse_known_intermixed_args(words)
    if extras:
        more = f" (and {len(extras) - 1} more)" if len(extras) > 1 else ""
        raise OptionError(f"{extras[0]}: unknown option{more}")
    environment: Mapping[str, str] = os.environ if env is None else env
    try:
        return _build(ns, [*ns.paths, *after_dashes], environment, now)
    except UnitError as error:
        raise OptionError(str(error)) from None


def _sources(listed: str | None, paths: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sources, ignored sources) of the command line's paths, the last being the destination;
    with a file list the command-line sources are ignored."""
    if not paths:
        raise OptionError("missing destination: expected SOURCE... DESTINATION")
    sources = tuple(paths[:-1])
    if listed is not None:
        return (), sources
    if not sources:
        raise OptionError(f"missing source or destination: only {paths[0]!r} given")
    return sources, ()


def _build(
    ns: argparse.Namespace, paths: list[str], env: Mapping[str, str], now: float | None
) -> CopyOptions:
    _inapplicable.check(ns, env)
    kind, listed = (ns.source_list or [(None, None)])[-1]
    sources, ignored = _sources(listed, paths)
    prefix = conv.source_prefix(ns.source_prefix)
    sources = tuple(_prefixed(prefix, source) for source in sources)
    destination = conv.dest64(paths[-1]) if ns.dest64 else paths[-1]
    keys, key_text = conv.private_keys(ns.keys, env)
    log_dir, log_size = conv.log_location(ns.log)
    # The groups convert in this fixed order: of two bad options, the same one is always reported.
    return CopyOptions(
        sources=sources, destination=destination,
        file_list=listed if kind == "file_list" else None,
        file_pair_list=listed if kind == "file_pair_list" else None,
        destination_must_be_directory=len(sources) > 1 or listed is not None,
        ignored_sources=ignored, source_prefix=prefix,
        **_file_fields(ns, now), **_transfer_fields(ns), **_session_fields(ns, env, keys, key_text),
        **_output_fields(ns, log_dir, log_size), **_far_end_fields(ns, env), **_block_sizes(ns),
    )  # fmt: skip


# One keyword a field, several to a line: tables, not reflowed by ruff format.
# fmt: off


def _file_fields(ns: argparse.Namespace, now: float | None) -> dict[str, Any]:
    """Which files, what is kept of them, and how existing ones are treated."""
    return dict(
        src_base=ns.src_base, create_dir=ns.create_dir, filters=tuple(ns.filters or ()),
        preserve_mtime=ns.preserve_mtime or ns.preserve_times,
        preserve_atime=ns.preserve_atime or ns.preserve_times,
        preserve_source_atime=ns.preserve_source_atime,
        remove_after_transfer=ns.remove_after_transfer,
        move_after_transfer=ns.move_after_transfer,
        remove_empty_directories=ns.remove_empty_directories,
        remove_empty_source_directory=ns.remove_empty_source_directory,
        skip_special_files=ns.skip_special_files, save_before_overwrite=ns.save_before_overwrite,
        exclude_newer_than=_mtime(ns.exclude_newer_than, "--exclude-newer-than", now),
        exclude_older_than=_mtime(ns.exclude_older_than, "--exclude-older-than", now),
        precalculate_job_size=ns.precalculate_job_size,
        resume=conv.integer(ns.resume, "-k", 0), byte_range=conv.byte_range(ns.byte_range),
        overwrite=conv.lower_or(ns.overwrite, "diff"),
        partial_file_suffix=ns.partial_file_suffix,
        symbolic_links=conv.lower_or(ns.symbolic_links, "follow"),
        preserve_uid=ns.preserve_uid, preserve_gid=ns.preserve_gid,
        delete_before_transfer=ns.delete_before_transfer,
    )


def _transfer_fields(ns: argparse.Namespace) -> dict[str, Any]:
    """Rates, cipher, datagrams and the UDP port."""
    return dict(
        target_rate=DEFAULT_TARGET_RATE if ns.target_rate is None else parse_rate(
            ns.target_rate, "-l"),
        min_rate=DEFAULT_MIN_RATE if ns.min_rate is None else parse_rate(
            ns.min_rate, "-m", allow_zero=True),
        policy=conv.lower(ns.policy), cipher=conv.cipher(ns.cipher, ns.no_encryption),
        datagram_size=None if ns.datagram_size is None else conv.integer(ns.datagram_size, "-Z", 0),
        rexmsg_size=conv.integer(ns.rexmsg_size, "-X", MAX_REXMSG_SIZE),
        udp_port=conv.integer(ns.udp_port, "-O", 33001),
    )


def _session_fields(ns: argparse.Namespace, env: Mapping[str, str], keys: tuple[str, ...],
                    key_text: str | None) -> dict[str, Any]:
    """The SSH login, and the parallel sessions of -C."""
    return dict(
        ssh_port=conv.integer(ns.ssh_port, "-P", 22),
        user=ns.user, host=ns.host, mode=conv.lower(ns.mode), keys=keys, key_text=key_text,
        password=env.get("SURGE_PASS") or env.get("ASPERA_SCP_PASS") or None,
        token=conv.token(ns.token, env), ipv6=ns.ipv6, multi_session=conv.multi_session(ns.multi_session),
        multi_session_threshold=0 if ns.multi_session_threshold is None else parse_size(
            ns.multi_session_threshold, "--multi-session-threshold"),
    )


def _output_fields(ns: argparse.Namespace, log_dir: str | None, log_size: int) -> dict[str, Any]:
    """Checksums and manifests of the files, the progress display and the logs."""
    return dict(
        file_checksum=conv.checksum(ns.file_checksum),
        file_manifest=conv.lower_or(ns.file_manifest, "none"),
        file_manifest_path=ns.file_manifest_path,
        file_manifest_inprogress_suffix=ns.file_manifest_inprogress_suffix,
        quiet=ns.quiet, log_dir=log_dir, log_size=log_size, debug=max(ns.debug, int(ns.verbose)),
        remote_log_dir=ns.remote_log_dir,
    )


def _far_end_fields(ns: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """The far end's expected host key, what is passed to it, and the program it runs."""
    return dict(
        check_sshfp=conv.sshfp(ns.check_sshfp), cookie=conv.cookie(ns.cookie, env), tags=conv.tags(ns.tags),
        remote_command=ns.remote_command,
    )


def _block_sizes(ns: argparse.Namespace) -> dict[str, Any]:
    """-g/-G: checked, no effect."""
    return dict(
        read_block_size=None if ns.read_block_size is None else parse_size(
            ns.read_block_size, "-g", minimum=1, maximum=MAX_BLOCK_SIZE),
        write_block_size=None if ns.write_block_size is None else parse_size(
            ns.write_block_size, "-G", minimum=1, maximum=MAX_BLOCK_SIZE),
    )


# fmt: on


def _mtime(text: str | None, option: str, now: float | None) -> float | None:
    if text is None:
        return None
    return parse_mtime_bound(text, option, time.time() if now is None else now)


def _prefixed(prefix: str | None, source: str) -> str:
    """--source-prefix before a source; for HOST:PATH, before its path."""
    head, path = conv.split_host(source)
    return head + conv.with_prefix(prefix, path)

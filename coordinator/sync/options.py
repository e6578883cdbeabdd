"""The command line of ``surge sync``: async syntax in, one validated :class:`SyncOptions` out.

:func:`parse_sync_args` is the only entry point that reads the environment (password, token,
cookie, ``$USER``) and the clock (``--exclude-dirs-older-than`` durations) and the filter rule
files; everything below it gets a frozen dataclass. Errors raise :class:`OptionError` with a
one-line message that starts with the option at fault; the CLI prints
``surge sync: error: <message>`` and exits 2. ``-h``/``--help`` and ``-A``/``--version`` raise
:class:`ShowHelp`/:class:`ShowVersion` (both :class:`InfoRequest`) carrying the text to print.

Choices where the async reference is silent or loose, so that they are easy to find:

* ``-N`` must precede every session option (the reference's rule); instance options (``-A``,
  ``--apply-local-docroot``, ``-D``, ``-h``, ``-L``, ``-q``, ``--watchd``) may come anywhere.
* ``-l``/``-m``: a bare number is bps (the reference lists the units G/g, M/m, K/k or bps);
  percentages are not accepted. Without ``-m``, a ``-l`` below 200 Kbps lowers the minimum to
  it; an explicit ``-m`` above ``-l`` is an error.
* ``-o always``/``older`` with ``-K bidi`` is an error (the reference: "Use with -K push and
  pull"); ``-o conflict`` is accepted with every direction.
* ``--dedup=hardlink`` with ``-u``/``-j`` is an error (the reference: "not supported").
* ``--user`` without a remote host is an error; with a remote host and no ``--user`` the user is
  ``$USER``, as the reference says. ``-r USER@A:DIR`` with a one-letter host is an error (``A:``
  reads as a drive); ``-r A:DIR`` is a local Windows path.
* ``--preserve-acls=native`` (Windows, macOS, AIX) and ``--preserve-xattrs=native`` (Linux,
  macOS) are errors on other platforms; the remote values are checked here only for a local
  sync, otherwise by the peer.
* ``-L``/``-R DIR:MB``: the size is a whole number of MB (the examples' ``c:/logs:200``).
* ``--exclude-dirs-older-than``: a plain number is epoch seconds, ``YYYY-...`` a UTC timestamp,
  anything else a duration that must spell every field right of its largest unit.
* ``--ignore_remote_host_sync_name`` is also accepted with hyphens.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from common.filters import FilterError, FilterRule, compile_filters
from common.units import Rate, UnitError, format_bytes
from coordinator.optcommon import CIPHERS, POLICIES

from . import _values as conv
from ._fields import sync_fields
from ._limits import (
    DATAGRAM_RANGE,
    DEFAULT_LOG_SIZE,
    DEFAULT_MIN_RATE,
    DEFAULT_READ_BLOCK,
    DEFAULT_SUPPORT_RESUME,
    DEFAULT_TARGET_RATE,
    DEFAULT_WRITE_BLOCK,
    MAX_COOLOFF,
    MAX_NAME_LENGTH,
    MAX_PENDING,
    MAX_READ_BLOCK,
    MAX_THREADS,
    MAX_TRANSFER_THREADS,
    MAX_WRITE_BLOCK,
    REXMSG_RANGE,
)
from ._optparse import InfoRequest, OptionError, ShowHelp, ShowVersion, build_parser, check_order
from ._optparse import Parser as _Parser

__all__ = [
    "CHECKSUMS", "CIPHERS", "DEDUP_MODES", "DEFAULT_MIN_RATE", "DEFAULT_TARGET_RATE", "DIRECTIONS",
    "OVERWRITE_POLICIES", "POLICIES", "PRESERVE_MODES", "SCAN_INTENSITIES", "SYMLINK_ACTIONS",
    "InfoRequest", "OptionError", "ShowHelp", "ShowVersion", "SyncOptions", "build_parser",
    "parse_sync_args",
]

DIRECTIONS = ("push", "pull", "bidi")
CHECKSUMS = ("sha1", "md5", "sha1-sparse", "md5-sparse", "none")
FULL_CHECKSUMS = ("sha1", "md5")
OVERWRITE_POLICIES = ("always", "older", "conflict")
DEDUP_MODES = ("hardlink", "inode", "copy")
PRESERVE_MODES = ("native", "metafile", "none")
SYMLINK_ACTIONS = ("copy", "skip", "follow")
SCAN_INTENSITIES = ("vlow", "low", "medium", "high", "vhigh")
COMPRESSIONS = ("zlib", "none")
NATIVE_ACLS = sys.platform in ("win32", "darwin") or sys.platform.startswith("aix")
NATIVE_XATTRS = sys.platform.startswith("linux") or sys.platform == "darwin"
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_HOST_RE = re.compile(r"[^\s/\\@]+")
_BAD_PATH_RE = re.compile(r"[\0\r\n]")


def _choice(option: str, what: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise OptionError(f"{option}: unknown {what} {value!r}: expected one of "
                          + ", ".join(choices))


def _range(option: str, value: int | None, low: int, high: int | None = None) -> None:
    if value is not None and (value < low or (high is not None and value > high)):
        bound = f"{low}..{high}" if high is not None else f"at least {low}"
        raise OptionError(f"{option}: {value} out of range {bound}")


@dataclass(frozen=True)
class SyncOptions:
    """Everything ``surge sync`` was asked to do; defaults are async's. Validated on creation.

    ``overwrite`` "" means the direction's default (always; conflict for bidi) and the
    ``remote_preserve_*`` "" the local value; both are resolved on creation."""

    name: str
    local_dir: str
    remote_dir: str
    host: str | None = None  # None: remote_dir is a local directory
    user: str | None = None
    direction: str = "push"
    continuous: bool = False
    create_dir: bool = False
    checksum: str = "sha1-sparse"
    overwrite: str = ""
    mirror: bool = False
    ignore_delete: bool = False
    delete_before: bool = False
    delete_delay: bool = False
    keep_dir_local: str | None = None
    keep_dir_remote: str | None = None
    remove_after_transfer: bool = False
    filters: tuple[FilterRule, ...] = ()
    exclude_dirs_older_than: float | None = None  # absolute epoch seconds
    exclude_dirs_older_than_text: str | None = None  # as given, to compare with later runs
    assume_no_mods: bool = False
    scan_file_rename: bool = False
    scan_dir_rename: bool = False
    dedup: str | None = None
    preserve_mtime: bool = False
    preserve_atime: bool = False
    preserve_ctime: bool = False  # Windows only: accepted, no effect
    preserve_uid: bool = False
    preserve_gid: bool = False
    write_uid: str | None = None
    write_gid: str | None = None
    preserve_xattrs: str = "none"
    remote_preserve_xattrs: str = ""
    preserve_acls: str = "none"
    remote_preserve_acls: str = ""
    preserve_object_lock_legal_hold: bool = False  # S3 to S3 only: accepted, no effect
    preserve_object_lock_retention: bool = False
    ignore_mode: bool = False
    no_preserve_root_attrs: bool = False
    symbolic_links: str = "copy"
    local_mount_signature: str | None = None
    remote_mount_signature: str | None = None
    local_fs_threads: int = 1
    remote_fs_threads: int = 1
    local_checksum_threads: int = 4
    remote_checksum_threads: int = 4
    scan_threads: int = 1
    remote_scan_threads: int = 1
    support_resume: int = DEFAULT_SUPPORT_RESUME
    resume_age_days: int = 5
    cooloff: int = 3
    cooloff_max: int = 0
    sharing_retry_max: int = 3
    pending_max: int = 2000
    scan_interval: float | None = None  # seconds
    remote_scan_interval: float | None = None
    no_scan: bool = False
    local_force_stat: bool = False
    remote_force_stat: bool = False
    scan_intensity: str = "medium"
    metrics_port: int | None = None  # -C: Prometheus endpoint on 127.0.0.1
    transfer_threads: tuple[tuple[int, int | None], ...] = ()  # (threads, size bound or None)
    file_manifest_path: str | None = None
    cookie: str | None = None
    tags: str | None = None  # JSON text of a JSON object
    log_dir: str | None = None
    log_size: int = DEFAULT_LOG_SIZE  # bytes
    remote_log_dir: str | None = None
    remote_log_size: int | None = None  # bytes; None: the server's
    debug: int = 0
    quiet: bool = False
    no_log_stats: bool = False
    watchd: str | None = None
    local_db_dir: str | None = None
    remote_db_dir: str | None = None
    reset: bool = False
    clean_excluded: bool = False
    store_metadata_records: bool = False
    ignore_remote_host_sync_name: bool = False
    apply_local_docroot: bool = False
    target_rate: Rate = DEFAULT_TARGET_RATE
    min_rate: Rate = DEFAULT_MIN_RATE
    policy: str = "fair"
    cipher: str = "aes128"
    compression: str = "none"
    udp_port: int = 33001
    ssh_port: int = 22
    keys: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    check_sshfp: str | None = None
    datagram_size: int | None = None  # None: the path MTU
    rexmsg_size: int = REXMSG_RANGE[1]
    read_block_size: int = DEFAULT_READ_BLOCK
    write_block_size: int = DEFAULT_WRITE_BLOCK
    raw_options: tuple[str, ...] = ()
    proxy: str | None = field(default=None, repr=False)  # holds the proxy password
    cluster: str | None = field(default=None, repr=False)  # Redis URL ("": $SURGE_BROKER_URL)
    detach: bool = False
    multi_session_threshold: int = 0  # bytes; 0: no file is split

    def __post_init__(self) -> None:
        _choice("-K", "direction", self.direction, DIRECTIONS)
        if not self.overwrite:
            object.__setattr__(self, "overwrite",
                               "conflict" if self.direction == "bidi" else "always")
        for side in ("xattrs", "acls"):
            if not getattr(self, f"remote_preserve_{side}"):
                object.__setattr__(self, f"remote_preserve_{side}",
                                   getattr(self, f"preserve_{side}"))
        self._check_names()
        self._check_values()
        self._check_combinations()
        try:
            compile_filters(self.filters)
        except FilterError as error:
            raise OptionError(str(error)) from None

    def _check_names(self) -> None:
        if not _NAME_RE.fullmatch(self.name) or len(self.name) > MAX_NAME_LENGTH:
            raise OptionError(f"-N: invalid session name {self.name[:40]!r}: use 1-"
                              f"{MAX_NAME_LENGTH} ASCII letters, digits, '-' and '_'")
        for option, path in (("-d", self.local_dir), ("-r", self.remote_dir)):
            if not path:
                raise OptionError(f"{option}: empty directory")
            if _BAD_PATH_RE.search(path):
                raise OptionError(f"{option}: a directory must not contain NUL, CR or LF")
        if self.host is not None and not _HOST_RE.fullmatch(self.host):
            raise OptionError(f"--host: invalid host name {self.host!r}")
        if self.user is not None and (not self.user or _BAD_PATH_RE.search(self.user)):
            raise OptionError("--user: invalid user name")
        for option, who in (("--write-uid", self.write_uid), ("--write-gid", self.write_gid)):
            if who is not None and not re.fullmatch(r"[^\s:]+", who):
                raise OptionError(f"{option}: invalid id {who!r}: a number or a name")
        if self.cookie is not None and _BAD_PATH_RE.search(self.cookie):
            raise OptionError("--cookie: must not contain CR, LF or NUL")
        if self.tags is not None and len(self.tags.encode()) > conv.MAX_TAGS_BYTES:
            raise OptionError(f"--tags: longer than {conv.MAX_TAGS_BYTES} bytes")

    def _check_values(self) -> None:
        _choice("-k", "checksum", self.checksum, CHECKSUMS)
        _choice("-o", "overwrite policy", self.overwrite, OVERWRITE_POLICIES)
        _choice("--dedup", "mode", self.dedup, DEDUP_MODES)
        for option in ("preserve_xattrs", "remote_preserve_xattrs", "preserve_acls",
                       "remote_preserve_acls"):
            _choice("--" + option.replace("_", "-"), "mode", getattr(self, option),
                    PRESERVE_MODES)
        _choice("-n", "symbolic link action", self.symbolic_links, SYMLINK_ACTIONS)
        _choice("-H", "scan intensity", self.scan_intensity, SCAN_INTENSITIES)
        _choice("-a", "rate policy", self.policy, POLICIES)
        _choice("-c", "cipher", self.cipher, CIPHERS)
        _choice("--compression", "method", self.compression, COMPRESSIONS)
        for name in ("local_fs_threads", "remote_fs_threads", "local_checksum_threads",
                     "remote_checksum_threads", "scan_threads", "remote_scan_threads"):
            _range("--" + name.replace("_", "-"), getattr(self, name), 1, MAX_THREADS)
        _range("--cooloff", self.cooloff, 0, MAX_COOLOFF)
        _range("--cooloff-max", self.cooloff_max, 0)
        _range("--sharing-retry-max", self.sharing_retry_max, 0)
        _range("--resume-age-days", self.resume_age_days, 0)
        _range("--support-resume", self.support_resume, 0)
        _range("--pending-max", self.pending_max, 1, MAX_PENDING)
        for option, interval in (("--scan-interval", self.scan_interval),
                                 ("--remote-scan-interval", self.remote_scan_interval)):
            if interval is not None and interval <= 0:
                raise OptionError(f"{option}: the interval must be positive")
        for threads, bound in self.transfer_threads:
            _range("--transfer-threads", threads, 1, MAX_TRANSFER_THREADS)
            _range("--transfer-threads", bound, 0)
        _range("-O", self.udp_port, 1, 65535)
        _range("-P", self.ssh_port, 1, 65535)
        _range("-Z", self.datagram_size, *DATAGRAM_RANGE)
        _range("-X", self.rexmsg_size, *REXMSG_RANGE)
        for option, size, top in (("-g", self.read_block_size, MAX_READ_BLOCK),
                                  ("-G", self.write_block_size, MAX_WRITE_BLOCK)):
            if not 1 <= size <= top:
                raise OptionError(f"{option}: block size {size} out of range 1 B.."
                                  f"{format_bytes(top)}")
        _range("-L", self.log_size, 1)
        _range("-R", self.remote_log_size, 1)
        _range("-D", self.debug, 0)
        if (self.exclude_dirs_older_than is None) != (self.exclude_dirs_older_than_text is None):
            raise OptionError("--exclude-dirs-older-than: the value and its text go together")
        if self.exclude_dirs_older_than is not None and self.exclude_dirs_older_than < 0:
            raise OptionError("--exclude-dirs-older-than: before 1970")
        if self.target_rate.percent is not None or not self.target_rate.bits_per_second:
            raise OptionError("-l: the target rate must be an absolute rate above zero")
        if self.min_rate.percent is not None:
            raise OptionError("-m: the minimum rate must be an absolute rate")
        if self.min_rate.resolve(0) > self.target_rate.resolve(0):
            raise OptionError(f"-m: minimum rate {self.min_rate} is above the target rate "
                              f"{self.target_rate} (-l)")

    def _check_combinations(self) -> None:
        if self.mirror:
            for given, other in ((self.direction == "bidi", "-K bidi"),
                                 (self.no_scan, "--no-scan"),
                                 (self.remove_after_transfer, "--remove-after-transfer"),
                                 (self.exclude_dirs_older_than is not None,
                                  "--exclude-dirs-older-than"),
                                 (self.ignore_delete, "--ignore-delete")):
                if given:
                    raise OptionError(f"--mirror: cannot be used with {other}")
        if self.delete_before:
            for given, other in ((self.delete_delay, "--delete-delay"),
                                 (self.ignore_delete, "--ignore-delete")):
                if given:
                    raise OptionError(f"--delete-before: cannot be used with {other}")
        if self.metrics_port is not None and not self.continuous:
            raise OptionError("--metrics-port: only with -C (a one-time sync ends before a scrape)")
        if self.no_scan and not self.continuous:
            raise OptionError("--no-scan: cannot be used with one-time sessions (without -C)")
        if self.no_scan and self.scan_interval is not None:
            raise OptionError("--no-scan: cannot be used with --scan-interval")
        if self.direction == "bidi" and self.overwrite != "conflict":
            raise OptionError(f"-o {self.overwrite}: is for -K push and pull; -K bidi takes "
                              "-o conflict")
        if self.dedup is not None and self.checksum not in FULL_CHECKSUMS:
            raise OptionError(f"--dedup: requires -k with a full checksum (sha1 or md5), not "
                              f"{self.checksum}")
        if self.dedup == "hardlink":
            for given, other in ((self.preserve_uid, "-u"), (self.preserve_gid, "-j")):
                if given:
                    raise OptionError(f"--dedup=hardlink: cannot be used with {other}; "
                                      "use --dedup=copy")
        if self.write_uid is not None and self.preserve_uid:
            raise OptionError("--write-uid: cannot be used with -u/--preserve-uid")
        if self.write_gid is not None and self.preserve_gid:
            raise OptionError("--write-gid: cannot be used with -j/--preserve-gid")
        if self.user is not None and self.host is None:
            raise OptionError("--user: needs a remote host (--host, or HOST:DIR in -r)")
        self._check_native()
        _check_cluster(self)

    def _check_native(self) -> None:
        sides = [("", self.preserve_acls, self.preserve_xattrs)]
        if self.host is None:  # the "remote" side is this machine too
            sides.append(("remote-", self.remote_preserve_acls, self.remote_preserve_xattrs))
        for prefix, acls, xattrs in sides:
            if acls == "native" and not NATIVE_ACLS:
                raise OptionError(f"--{prefix}preserve-acls=native is not supported on this "
                                  "platform")
            if xattrs == "native" and not NATIVE_XATTRS:
                raise OptionError(f"--{prefix}preserve-xattrs=native is not supported on this "
                                  "platform")


def _check_cluster(o: SyncOptions) -> None:
    """--cluster: workers send from the shared local directory with no secret of the user."""
    if o.cluster is None:
        for given, option in ((o.detach, "--detach"), (o.multi_session_threshold, "--multi-session-threshold")):
            if given:
                raise OptionError(f"{option}: needs --cluster URL")
        return
    _range("--multi-session-threshold", o.multi_session_threshold, 0)
    if o.detach and o.metrics_port is not None:
        raise OptionError("--metrics-port: with --detach, `surge coordinator --metrics-port N` serves "
                          "the job's metrics")  # fmt: skip
    for bad, why in ((o.direction != "push", f"-K {o.direction} is not run on a cluster (workers send "
                                                  "from the shared local directory): use -K push"),
                     (o.password is not None, "a password (-w, SURGE_PASS) is never given to workers: "
                                              "use an SSH key (-i) or a token (-W)"),
                     (o.proxy is not None, "--proxy is not supported on a cluster"),
                     (o.remove_after_transfer, "--remove-after-transfer is not supported on a cluster")):
        if bad:
            raise OptionError(f"--cluster: {why}")  # fmt: skip


# ------------------------------------------------------------------------------- conversion


def parse_sync_args(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                    now: float | None = None) -> SyncOptions:
    """Parse ``surge sync`` arguments (without the ``surge sync`` words themselves).

    ``env`` defaults to :data:`os.environ`, ``now`` (for durations) to the clock. Raises
    :class:`OptionError` for a bad command line and :class:`InfoRequest` for -h/-A.
    """
    parser = build_parser()
    assert isinstance(parser, _Parser)
    ns, extras = parser.parse_known_args(parser.join_values(argv))
    if extras:
        more = f" (and {len(extras) - 1} more)" if len(extras) > 1 else ""
        what = "unknown option" if extras[0].startswith("-") else "unexpected argument"
        raise OptionError(f"{extras[0]}: {what}{more}")
    check_order(ns)
    try:
        return SyncOptions(**sync_fields(ns, os.environ if env is None else env,
                                         time.time() if now is None else now))
    except UnitError as error:
        raise OptionError(str(error)) from None

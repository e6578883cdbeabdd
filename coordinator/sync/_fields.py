"""The parsed ``surge sync`` namespace as the keyword arguments of
:class:`~coordinator.sync.options.SyncOptions`, one helper per option group. Values are converted
here (environment fallbacks, units, rule files); :class:`SyncOptions` validates the whole.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from common.filters import FilterError, FilterRule, Kind, read_rule_file
from common.units import parse_duration, parse_size

from . import _values as conv
from ._limits import (
    DEFAULT_LOG_SIZE,
    DEFAULT_MIN_RATE,
    DEFAULT_READ_BLOCK,
    DEFAULT_SUPPORT_RESUME,
    DEFAULT_TARGET_RATE,
    DEFAULT_WRITE_BLOCK,
    MAX_TRANSFER_THREADS,
    REXMSG_RANGE,
)
from ._optparse import OptionError

__all__ = ["sync_fields"]

Fields = dict[str, Any]


def sync_fields(ns: argparse.Namespace, env: Mapping[str, str], now: float) -> Fields:
    """Every :class:`SyncOptions` field from ``ns``; ``env`` for the variables that stand in for
    options, ``now`` for durations. Raises :class:`OptionError` for the first bad value."""
    # The groups run in this order so that the option reported first stays the same.
    fields = _endpoints(ns, env) | _logs(ns) | _rates(ns)
    _check_texts(ns)
    return fields | _files(ns, now) | _scanning(ns) | _session(ns, env) | _transfer(ns, env)


def _number(text: str | None, option: str, default: int) -> int:
    return default if text is None else conv.integer(text, option, 0)


def _lower(text: str | None, default: str) -> str:
    return default if text is None else text.strip().lower()


def _duration(text: str | None, option: str) -> float | None:
    return None if text is None else parse_duration(text, option)


def _dir(text: str | None) -> str | None:
    """A directory of -d/-r/-L/-R/-B/-b/--keep-dir-local/--keep-dir-remote: the reference makes
    "\\" a platform-independent path separator there (only there), so it becomes "/"."""
    return None if text is None else text.replace("\\", "/")


def _size(text: str | None, option: str, default: int) -> int:
    return default if text is None else parse_size(text, option)


def _metrics_port(text: str) -> int:
    from common.metrics import parse_metrics_port  # prometheus_client: only when asked for

    try:
        return parse_metrics_port(text)
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def _filters(given: list[tuple[tuple[Kind, bool], str, str]] | None) -> tuple[FilterRule, ...]:
    """--include/--exclude rules and those of -I/-E files, in command-line order."""
    rules: list[FilterRule] = []
    for (kind, from_file), value, option in given or ():
        if not from_file:
            rules.append(FilterRule(kind, value, option))
            continue
        try:
            rules.extend(read_rule_file(value, kind))
        except FilterError as error:
            raise OptionError(f"{option}: {error}") from None
    return tuple(rules)


def _endpoints(ns: argparse.Namespace, env: Mapping[str, str]) -> Fields:
    """The session: its name, the two directories, who and where the remote is, the direction."""
    if ns.local_dir is None:
        raise OptionError("-d: required: the local directory")
    if ns.remote_dir is None:
        raise OptionError("-r: required: the remote directory ([[USER@]HOST:]RDIR)")
    user, host, remote_dir = conv.split_remote(ns.remote_dir, ns.host, ns.user)
    if host is not None and user is None:
        user = conv.env_value(env, "USER")
    return dict(
        name=ns.name, local_dir=_dir(ns.local_dir), remote_dir=_dir(remote_dir), host=host, user=user,
        direction=_lower(ns.direction, "push"), continuous=ns.continuous,
        create_dir=ns.create_dir)


def _logs(ns: argparse.Namespace) -> Fields:
    """-L and -R: the log directories and their rotation sizes."""
    log_dir, log_size = (None, None) if ns.log is None else conv.log_location(ns.log, "-L")
    remote_log_dir, remote_log_size = (None, None) if ns.remote_log is None else \
        conv.log_location(ns.remote_log, "-R")
    return dict(log_dir=_dir(log_dir), log_size=log_size or DEFAULT_LOG_SIZE,
                remote_log_dir=_dir(remote_log_dir), remote_log_size=remote_log_size)


def _rates(ns: argparse.Namespace) -> Fields:
    """-l and -m; without -m, a target below the default minimum lowers the minimum to it."""
    target = DEFAULT_TARGET_RATE if ns.target_rate is None else conv.async_rate(
        ns.target_rate, "-l", allow_zero=False)
    minimum = min(DEFAULT_MIN_RATE, target, key=lambda rate: rate.resolve(0)) \
        if ns.min_rate is None else conv.async_rate(ns.min_rate, "-m", allow_zero=True)
    return dict(target_rate=target, min_rate=minimum)


def _check_texts(ns: argparse.Namespace) -> None:
    """The options kept as given: --no-log and the secrets -w and -W."""
    if ns.no_log not in (None, "stats"):
        raise OptionError(f"--no-log: only 'stats' can be suppressed, not {ns.no_log!r}")
    for option, secret in (("-w", ns.password), ("-W", ns.token)):
        if secret is not None and not secret.strip():
            raise OptionError(f"{option}: empty value")


def _files(ns: argparse.Namespace, now: float) -> Fields:
    """What to synchronise: filters, comparison, deletions, renames, what metadata to keep."""
    return dict(
        checksum=_lower(ns.checksum, "sha1-sparse"),
        overwrite=_lower(ns.overwrite, ""), mirror=ns.mirror, ignore_delete=ns.ignore_delete,
        delete_before=ns.delete_before, delete_delay=ns.delete_delay,
        keep_dir_local=_dir(ns.keep_dir_local), keep_dir_remote=_dir(ns.keep_dir_remote),
        remove_after_transfer=ns.remove_after_transfer, filters=_filters(ns.filters),
        exclude_dirs_older_than=None if ns.exclude_dirs_older_than is None else
        conv.exclude_dirs_older_than(ns.exclude_dirs_older_than, now),
        exclude_dirs_older_than_text=ns.exclude_dirs_older_than,
        assume_no_mods=ns.assume_no_mods, scan_file_rename=ns.scan_file_rename,
        scan_dir_rename=ns.scan_dir_rename,
        dedup=None if ns.dedup is None else _lower(ns.dedup, ""),
        preserve_mtime=ns.preserve_mtime, preserve_atime=ns.preserve_atime,
        preserve_ctime=ns.preserve_ctime, preserve_uid=ns.preserve_uid,
        preserve_gid=ns.preserve_gid, write_uid=ns.write_uid, write_gid=ns.write_gid,
        preserve_xattrs=_lower(ns.preserve_xattrs, "none"),
        remote_preserve_xattrs=_lower(ns.remote_preserve_xattrs, ""),
        preserve_acls=_lower(ns.preserve_acls, "none"),
        remote_preserve_acls=_lower(ns.remote_preserve_acls, ""),
        preserve_object_lock_legal_hold=ns.preserve_object_lock_legal_hold,
        preserve_object_lock_retention=ns.preserve_object_lock_retention,
        ignore_mode=ns.ignore_mode, no_preserve_root_attrs=ns.no_preserve_root_attrs,
        clean_excluded=ns.clean_excluded, store_metadata_records=ns.store_metadata_records,
        symbolic_links=_lower(ns.symbolic_links, "copy"),
        local_mount_signature=ns.local_mount_signature,
        remote_mount_signature=ns.remote_mount_signature)


def _scanning(ns: argparse.Namespace) -> Fields:
    """Threads, retries, queue bounds and scan cadence; the metrics port and transfer threads."""
    return dict(
        local_fs_threads=_number(ns.local_fs_threads, "--local-fs-threads", 1),
        remote_fs_threads=_number(ns.remote_fs_threads, "--remote-fs-threads", 1),
        local_checksum_threads=_number(ns.local_checksum_threads, "--local-checksum-threads", 4),
        remote_checksum_threads=_number(ns.remote_checksum_threads,
                                        "--remote-checksum-threads", 4),
        scan_threads=_number(ns.scan_threads, "--scan-threads", 1),
        remote_scan_threads=_number(ns.remote_scan_threads, "--remote-scan-threads", 1),
        support_resume=_size(ns.support_resume, "--support-resume", DEFAULT_SUPPORT_RESUME),
        resume_age_days=_number(ns.resume_age_days, "--resume-age-days", 5),
        cooloff=_number(ns.cooloff, "--cooloff", 3),
        cooloff_max=_number(ns.cooloff_max, "--cooloff-max", 0),
        sharing_retry_max=_number(ns.sharing_retry_max, "--sharing-retry-max", 3),
        pending_max=_number(ns.pending_max, "--pending-max", 2000),
        scan_interval=_duration(ns.scan_interval, "--scan-interval"),
        remote_scan_interval=_duration(ns.remote_scan_interval, "--remote-scan-interval"),
        no_scan=ns.no_scan, local_force_stat=ns.local_force_stat,
        remote_force_stat=ns.remote_force_stat,
        scan_intensity=_lower(ns.scan_intensity, "medium"),
        metrics_port=None if ns.metrics_port is None else _metrics_port(ns.metrics_port),
        transfer_threads=conv.transfer_threads(ns.transfer_threads or (), MAX_TRANSFER_THREADS))


def _session(ns: argparse.Namespace, env: Mapping[str, str]) -> Fields:
    """The session's bookkeeping: manifests, cookie and tags, output, the databases."""
    return dict(
        file_manifest_path=ns.file_manifest_path,
        cookie=ns.cookie if ns.cookie is not None else conv.env_value(
            env, "SURGE_COOKIE", "ASPERA_SCP_COOKIE"),
        tags=conv.tags(ns.tags), debug=ns.debug, quiet=ns.quiet,
        no_log_stats=ns.no_log == "stats",
        watchd=None if ns.watchd is None else conv.watchd(ns.watchd),
        local_db_dir=_dir(ns.local_db_dir), remote_db_dir=_dir(ns.remote_db_dir), reset=ns.reset,
        ignore_remote_host_sync_name=ns.ignore_remote_host_sync_name,
        apply_local_docroot=ns.apply_local_docroot)


def _transfer(ns: argparse.Namespace, env: Mapping[str, str]) -> Fields:
    """The FASP transfer: rate policy, cipher, ports, credentials, packet and block sizes, and
    the cluster."""
    return dict(
        policy=_lower(ns.policy, "fair"),
        cipher="aes128" if ns.cipher is None else conv.cipher(ns.cipher),
        compression=_lower(ns.compression, "none"),
        udp_port=_number(ns.udp_port, "-O", 33001), ssh_port=_number(ns.ssh_port, "-P", 22),
        keys=tuple(ns.keys or ()),
        password=ns.password if ns.password is not None else conv.env_value(
            env, "SURGE_PASS", "ASPERA_SCP_PASS"),
        token=ns.token if ns.token is not None else conv.env_value(
            env, "SURGE_TOKEN", "ASPERA_SCP_TOKEN"),
        check_sshfp=None if ns.check_sshfp is None else conv.check_sshfp(ns.check_sshfp),
        datagram_size=None if ns.datagram_size is None else conv.integer(
            ns.datagram_size, "-Z", 0),
        rexmsg_size=_number(ns.rexmsg_size, "-X", REXMSG_RANGE[1]),
        read_block_size=_size(ns.read_block_size, "-g", DEFAULT_READ_BLOCK),
        write_block_size=_size(ns.write_block_size, "-G", DEFAULT_WRITE_BLOCK),
        raw_options=tuple(ns.raw_options or ()),
        proxy=None if ns.proxy is None else conv.proxy(ns.proxy),
        cluster=ns.cluster, detach=ns.detach,
        multi_session_threshold=_size(ns.multi_session_threshold, "--multi-session-threshold", 0))

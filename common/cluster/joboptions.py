"""The sync options a worker needs, as the JSON the coordinator stores with a job (the job hash's
``options`` field), and back.

A worker sends files from the shared storage (``local_dir``) to the far end with the pair's
transfer settings: remote host/user/dir, SSH port and key paths, rates, policy, cipher, ports,
datagram and retransmission-request sizes, the checksum used to compare files, the overwrite
policy and whether times are preserved. Secrets never leave the coordinator's process (Redis is
shared and not a secret store): a job that needs a password is refused with a message saying how
to run it instead (an SSH key with -i), and a job with a transfer token only says so - each
worker takes the token from its own environment (SURGE_TOKEN or ASPERA_SCP_TOKEN).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from common.units import Rate

__all__ = ["JOB_OPTION_KEYS", "JobOptionsError", "job_options", "sync_options"]


class JobOptionsError(ValueError):
    """The sync cannot run on a cluster as asked (the message names the option and why)."""


# Plain fields copied as they are (the rates are encoded apart).
_PLAIN: Final = ("name", "local_dir", "remote_dir", "host", "user", "direction", "create_dir",
                 "checksum", "overwrite", "preserve_mtime", "preserve_atime", "policy", "cipher",
                 "udp_port", "ssh_port", "keys", "check_sshfp", "datagram_size",
                 "rexmsg_size", "cookie", "tags")  # fmt: skip
JOB_OPTION_KEYS: Final = (*_PLAIN, "target_rate", "min_rate")


def _rate(rate: Rate) -> dict[str, float]:
    if rate.percent is not None:
        return {"percent": rate.percent}
    assert rate.bits_per_second is not None
    return {"bps": rate.bits_per_second}


def _unrate(d: dict[str, Any]) -> Rate:
    if "percent" in d:
        return Rate(percent=float(d["percent"]))
    return Rate(bits_per_second=float(d["bps"]))


def job_options(opts: Any) -> dict[str, Any]:
    """The JSON-safe options of a job from a SyncOptions. Raises JobOptionsError when the sync
    needs a secret workers cannot be given, or a direction workers do not run."""
    if opts.password:
        raise JobOptionsError("--cluster: a password (ASPERA_SCP_PASS) is never sent to workers; "
                              "give the workers an SSH key (-i) or use a transfer token")  # fmt: skip
    if getattr(opts, "proxy", None):
        raise JobOptionsError("--cluster: a proxy with a password is not supported on a cluster")
    if opts.direction != "push":
        raise JobOptionsError(f"--cluster: -K {opts.direction} is not run on a cluster "
                              "(workers send from the shared local directory: use -K push)")  # fmt: skip
    out: dict[str, Any] = {k: getattr(opts, k) for k in _PLAIN}
    out["keys"] = list(opts.keys)
    out["token_required"] = bool(opts.token)
    out["target_rate"] = _rate(opts.target_rate)
    out["min_rate"] = _rate(opts.min_rate)
    return out


def sync_options(d: dict[str, Any], env: Mapping[str, str] | None = None) -> Any:
    """A SyncOptions from the options of a job (validated again: a job written by hand or by
    another version fails here with the option named), with the transfer token of this worker's
    environment when the job needs one. Raises JobOptionsError."""
    from coordinator.sync.options import OptionError, SyncOptions

    missing = [k for k in ("name", "local_dir", "remote_dir") if not d.get(k)]
    if missing:
        raise JobOptionsError(f"job options: missing {', '.join(missing)}")
    known: dict[str, Any] = {k: d[k] for k in _PLAIN if k in d}
    known["keys"] = tuple(d.get("keys") or ())
    if d.get("token_required"):
        env = os.environ if env is None else env
        known["token"] = env.get("SURGE_TOKEN") or env.get("ASPERA_SCP_TOKEN")
        if not known["token"]:
            raise JobOptionsError("-W: this job uses a transfer token; tokens are not stored in Redis, so "
                                  "start the workers with SURGE_TOKEN (or ASPERA_SCP_TOKEN) set")  # fmt: skip
    try:
        for k in ("target_rate", "min_rate"):
            if k in d:
                known[k] = _unrate(d[k])
        return SyncOptions(**known)
    except (OptionError, ValueError, KeyError, TypeError) as exc:
        raise JobOptionsError(f"job options: {exc}") from None

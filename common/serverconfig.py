"""The server configuration (the role of aspera.conf): one TOML file, read and validated once.

Tables and keys (docs/SERVER.md has an example file and explains each one):

* ``[server]``: listen, ssh_port, udp_ports (``"33001-33100"``), host_key, authorized_keys (for
  users without their own), token_secret (hex or base64) or token_secret_file, max_sessions.
* ``[defaults]``, for every user: docroot or restrictions, directions, cipher, target_rate_cap,
  target_rate_default, min_rate_cap, min_rate_default, policies, default_policy, filters
  (aspera.conf rules like ``"- *.tmp"``, applied before the client's), partial_file_suffix,
  resume_suffix, datagram_size (0 leaves it to the client's -Z; else it overrides -Z).
* ``[users.NAME]``: any key of ``[defaults]``, and password (made by :func:`hash_password`, never
  plaintext), authorized_keys (a file, read at load) and/or authorized_keys_data (key lines).

Rates are ascp ``-l`` strings (a bare number is Kbps) or integers in Kbps as in aspera.conf.
Relative file names are from the configuration file's directory. A table setting ``docroot`` or
non-empty ``restrictions`` replaces both inherited ones. Every problem, unknown keys (typos)
included, is a :class:`ConfigError` naming the file, the table and key, and what is wrong.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import posixpath
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from common.filters import FilterRule, compile_filters, parse_conf_rule
from common.paths import PathError
from common.tokens import (
    MIN_SECRET_BYTES,
    check_password,
    hash_password,
    normalize_direction,
    validate_password_hash,
)
from common.transport.ciphers import ServerCipherPolicy
from common.units import UnitError, parse_rate

__all__ = ["DEFAULT_TARGET_RATE_BPS", "POLICIES", "ConfigError", "ServerConfig", "UserPolicy",
           "check_password", "hash_password", "load_config"]

POLICIES: Final = ("fixed", "high", "fair", "low")
DEFAULT_TARGET_RATE_BPS: Final = 10_000_000
"""ascp's target rate when neither the client nor the server sets one (10000 Kbps)."""
_VERB: Final = {"push": "upload", "pull": "download"}
_KEY_LINE: Final = re.compile(r"(?:^|\s)(?:ssh-[a-z0-9-]+|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+)"
                              r"\s+[A-Za-z0-9+/]+={0,2}(?:\s|$)")


class ConfigError(ValueError):
    """A bad server configuration; the message names the file, the table and key, the problem."""


def _within(path: str, root: str) -> bool:
    """``path`` is ``root`` or under it, component-wise (both normalized and absolute)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _parts(path: str) -> list[str]:
    """Components of a remote path, '..' applied; PathError if it climbs above the top."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if not parts:
                raise PathError(f"remote path {path!r} escapes its root with '..'")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return parts


@dataclass(frozen=True)
class UserPolicy:
    """What one transfer user may do; built by :func:`load_config`."""

    name: str = "*"
    docroot: str | None = None
    restrictions: tuple[str, ...] = ()
    directions: frozenset[str] = frozenset({"push", "pull"})
    cipher: ServerCipherPolicy = field(default_factory=ServerCipherPolicy)
    target_rate_cap_bps: int | None = None
    target_rate_default_bps: int | None = None
    min_rate_cap_bps: int | None = None
    min_rate_default_bps: int | None = None
    policies: frozenset[str] = frozenset(POLICIES)
    default_policy: str = "fair"
    filters: tuple[FilterRule, ...] = ()
    partial_file_suffix: str = ""
    resume_suffix: str = ".aspx"
    datagram_size: int | None = None
    password_hash: str | None = field(default=None, repr=False)
    authorized_keys: tuple[str, ...] = ()

    def resolve(self, path: str) -> str:
        """The absolute local path for a remote ``path``, or PathError.

        With a docroot, every path is relative to it (an absolute one too, as the reference
        says); with restrictions, it must be absolute and under one; with neither, a relative
        path is from the working directory (home, under sshd) unless it looks like a Windows
        path. '..' may not climb out, nor may a symbolic link existing now point outside.
        """
        if not isinstance(path, str) or not path or "\0" in path:
            raise PathError(f"invalid remote path {path!r}")
        if self.docroot is not None:
            local = posixpath.join(self.docroot, *_parts(path))
            self._check_links(path, local, (self.docroot,))
            return local
        if self.restrictions:
            if not path.startswith("/"):
                raise PathError(f"Remote directory is not absolute: {path!r} (user "
                                f"{self.name} has restrictions, so paths must be absolute)")
            local = "/" + "/".join(_parts(path))
            roots = tuple(r for r in self.restrictions if _within(local, r))
            if not roots:
                raise PathError(f"remote path {path!r} is outside the restrictions of user "
                                f"{self.name}: {', '.join(self.restrictions)}")
            self._check_links(path, local, self.restrictions)
            return local
        if not path.startswith("/") and (re.match(r"[A-Za-z]:", path) or "\\" in path):
            raise PathError(f"Remote directory is not absolute: {path!r} looks like a "
                            "Windows path; give an absolute path with forward slashes")
        return os.path.normpath(os.path.join(os.getcwd(), path))

    def _check_links(self, path: str, local: str, roots: tuple[str, ...]) -> None:
        real = os.path.realpath(local)
        if not any(_within(real, os.path.realpath(root)) for root in roots):
            where = "the docroot" if self.docroot is not None else "the restrictions"
            raise PathError(f"remote path {path!r} leaves {where} through a symbolic link")

    def check_direction(self, direction: str) -> None:
        """PermissionError unless the user may transfer in ``direction`` (push/pull/upload/...)."""
        name = normalize_direction(direction, allow_bidi=False)
        if name not in self.directions:
            raise PermissionError(f"user {self.name} may not {_VERB[name]} ({name})")

    def clamp_rates(self, target_bps: int | None, min_bps: int | None,
                    policy: str | None) -> tuple[int, int, str]:
        """(target, minimum, policy) for a client's ``-l``, ``-m`` and ``-a`` (None: not given).

        Missing values take the user's defaults (else 10 Mbps, 0 and ``default_policy``); then
        the target is lowered to ``target_rate_cap``, the minimum to ``min_rate_cap`` and to the
        target. A policy the user may not use raises PermissionError.
        """
        chosen = self.default_policy if policy is None else policy
        if chosen not in self.policies:
            raise PermissionError(f"policy {chosen!r} is not allowed for user {self.name} "
                                  f"(allowed: {', '.join(sorted(self.policies))})")
        target = target_bps if target_bps is not None else (
            self.target_rate_default_bps or DEFAULT_TARGET_RATE_BPS)
        if self.target_rate_cap_bps is not None:
            target = min(target, self.target_rate_cap_bps)
        minimum = min_bps if min_bps is not None else (self.min_rate_default_bps or 0)
        if self.min_rate_cap_bps is not None:
            minimum = min(minimum, self.min_rate_cap_bps)
        return int(target), int(min(minimum, target)), chosen


@dataclass(frozen=True)
class ServerConfig:
    """The whole server configuration; :func:`load_config` builds it."""

    listen: str = "0.0.0.0"
    ssh_port: int = 33001
    udp_ports: tuple[int, int] = (33001, 33100)
    host_key: str | None = None
    authorized_keys: str | None = None
    token_secret: bytes | None = field(default=None, repr=False)
    max_sessions: int = 100
    defaults: UserPolicy = field(default_factory=UserPolicy)
    users: Mapping[str, UserPolicy] = field(default_factory=lambda: MappingProxyType({}))

    def user(self, name: str) -> UserPolicy:
        """The policy of ``name``; an unconfigured user (an OS user under sshd) gets the defaults."""
        found = self.users.get(name)
        return found if found is not None else dataclasses.replace(self.defaults, name=name)


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError(f"expected a non-empty string, not {value!r}")
    return value


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of non-empty strings, not {value!r}")
    return value


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}, not {value!r}")
        return value
    return convert


def _absolute(value: Any) -> str:
    if not _string(value).startswith("/"):
        raise ValueError(f"expected an absolute path, not {value!r}")
    return "/" + "/".join(p for p in posixpath.normpath(value).split("/") if p)


def _rate(value: Any, allow_zero: bool = False) -> int:
    """An ascp -l string, or an integer in Kbps as in aspera.conf."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a rate like \"100m\" or an integer in Kbps, not {value!r}")
    try:
        rate = parse_rate(str(value), "rate", allow_zero=allow_zero)
    except UnitError as exc:
        raise ValueError(str(exc).removeprefix("rate: ")) from None
    if rate.is_percent:
        raise ValueError(f"expected an absolute rate, not a percentage ({value!r})")
    return rate.resolve(0)


def _suffix(value: Any, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or not (value or allow_empty) or {*value} & {"/", "\\", "\0"}:
        raise ValueError(f"expected a file name suffix without '/', not {value!r}")
    return value


def _policies(value: Any) -> frozenset[str]:
    if not _strings(value) or any(v not in POLICIES for v in value):
        raise ValueError(f"expected some of {', '.join(POLICIES)}, not {value!r}")
    return frozenset(value)


def _filters(value: Any) -> tuple[FilterRule, ...]:
    rules = tuple(parse_conf_rule(rule, f"rule {i}") for i, rule in enumerate(_strings(value), 1))
    compile_filters(rules)
    return rules


def _read(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ValueError(f"{path!r} is larger than {limit} bytes")
    return data.decode("utf-8")  # a UnicodeDecodeError is a ValueError too


def _key_lines(text: str) -> tuple[str, ...]:
    lines = [line.strip() for line in text.splitlines()]
    for number, line in enumerate(lines, start=1):
        if line and not line.startswith("#") and not _KEY_LINE.search(line):
            raise ValueError(f"line {number} is not an SSH public key: {line[:40]!r}")
    return tuple(line for line in lines if line and not line.startswith("#"))


def _secret(text: str) -> bytes:
    text = text.strip()
    try:
        if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
            secret = bytes.fromhex(text)
        else:
            bare = text.rstrip("=").replace("-", "+").replace("_", "/")
            secret = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
    except ValueError:  # binascii.Error included
        raise ValueError("expected a hex or base64 string") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret is {len(secret)} bytes; at least {MIN_SECRET_BYTES} needed")
    return secret


def _udp_ports(value: Any) -> tuple[int, int]:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    match = re.fullmatch(r"\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?", text)
    low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"expected a port or a range like \"33001-33100\", not {value!r}")
    return low, high


# Each key: (dataclass field, converter of the TOML value). A converter's ValueError becomes a
# ConfigError naming the file, the table and the key.
_Key = tuple[str, Callable[[Any], Any]]
_FILE_KEYS: Final = frozenset({"host_key", "authorized_keys", "token_secret_file"})
_SERVER_KEYS: Final[dict[str, _Key]] = {
    "listen": ("listen", _string),
    "ssh_port": ("ssh_port", _integer(1, 65535)),
    "udp_ports": ("udp_ports", _udp_ports),
    "host_key": ("host_key", str),
    "authorized_keys": ("authorized_keys", str),
    "token_secret": ("token_secret", lambda v: _secret(_string(v))),
    "token_secret_file": ("token_secret", lambda path: _secret(_read(path, 4096))),
    "max_sessions": ("max_sessions", _integer(1, 1_000_000)),
}
_POLICY_KEYS: Final[dict[str, _Key]] = {
    "docroot": ("docroot", _absolute),
    "restrictions": ("restrictions", lambda v: tuple(_absolute(r) for r in _strings(v))),
    "directions": ("directions", lambda v: frozenset(
        normalize_direction(d, allow_bidi=False) for d in _strings(v))),
    "cipher": ("cipher", lambda v: ServerCipherPolicy(_string(v))),
    "target_rate_cap": ("target_rate_cap_bps", _rate),
    "target_rate_default": ("target_rate_default_bps", _rate),
    "min_rate_cap": ("min_rate_cap_bps", lambda v: _rate(v, allow_zero=True)),
    "min_rate_default": ("min_rate_default_bps", lambda v: _rate(v, allow_zero=True)),
    "policies": ("policies", _policies),
    "default_policy": ("default_policy", _string),
    "filters": ("filters", _filters),
    "partial_file_suffix": ("partial_file_suffix", lambda v: _suffix(v, allow_empty=True)),
    "resume_suffix": ("resume_suffix", _suffix),
    "datagram_size": ("datagram_size", lambda v: None if v == 0 and type(v) is int
                      else _integer(296, 65535)(v)),  # 0: leave it to the client's -Z
}
_USER_KEYS: Final[dict[str, _Key]] = {
    **_POLICY_KEYS,
    "password": ("password_hash", lambda v: validate_password_hash(_string(v))),
    "authorized_keys": ("authorized_keys", lambda path: _key_lines(_read(path, 1 << 20))),
    "authorized_keys_data": ("authorized_keys_data", lambda v: _key_lines(_string(v))),
}


def _fields(file: str, name: str, table: Any, keys: Mapping[str, _Key]) -> dict[str, Any]:
    """The dataclass fields that the keys of one table set."""
    where = f"{file}: [{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    for one, other in (("docroot", "restrictions"), ("token_secret", "token_secret_file")):
        if one in table and table.get(other):
            raise ConfigError(f"{where} {one}: give {one} or {other}, not both")
    fields: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(f"{where} {key}: unknown key (expected one of "
                              f"{', '.join(sorted(keys))})")
        try:
            if key in _FILE_KEYS:  # relative to the configuration file
                value = os.path.normpath(os.path.join(os.path.dirname(file), _string(value)))
            fields[keys[key][0]] = keys[key][1](value)
        except ValueError as exc:
            raise ConfigError(f"{where} {key}: {exc}") from None
    if fields.get("restrictions"):
        fields["docroot"] = None
    elif "docroot" in fields:
        fields["restrictions"] = ()
    if "authorized_keys_data" in fields:  # adds to the keys of the file
        added = fields.pop("authorized_keys_data")
        fields["authorized_keys"] = fields.get("authorized_keys", ()) + added
    return fields


def _policy(file: str, name: str, table: Any, base: UserPolicy, keys: Mapping[str, _Key],
            user: str) -> UserPolicy:
    policy = dataclasses.replace(base, name=user, **_fields(file, name, table, keys))
    if policy.default_policy not in policy.policies:
        raise ConfigError(f"{file}: [{name}] default_policy: {policy.default_policy!r} is not "
                          f"among the allowed policies ({', '.join(sorted(policy.policies))})")
    return policy


def load_config(path: str | os.PathLike[str] | None) -> ServerConfig:
    """Read and validate the configuration file; ``None`` gives every default (no docroot)."""
    if path is None:
        return ServerConfig()
    file = os.fspath(path)
    try:
        with open(file, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    for table in data:
        if table not in ("server", "defaults", "users"):
            raise ConfigError(f"{file}: [{table}]: unknown table (expected server, defaults, "
                              "users)")
    server = _fields(file, "server", data.get("server", {}), _SERVER_KEYS)
    defaults = _policy(file, "defaults", data.get("defaults", {}), UserPolicy(), _POLICY_KEYS, "*")
    users = data.get("users", {})
    if not isinstance(users, dict):
        raise ConfigError(f"{file}: [users]: must be a table of [users.NAME] tables")
    policies: dict[str, UserPolicy] = {}
    for user, table in users.items():
        if not user or not user.isprintable() or any(c in user for c in " /:"):
            raise ConfigError(f"{file}: [users] {user!r}: a user name may not be empty or hold "
                              "spaces, '/' or ':'")
        policies[user] = _policy(file, f"users.{user}", table, defaults, _USER_KEYS, user)
    return ServerConfig(**server, defaults=defaults, users=MappingProxyType(policies))

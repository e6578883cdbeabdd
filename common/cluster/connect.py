"""The one way Surge opens Redis: the URL from ``--cluster`` or ``SURGE_BROKER_URL``, checked
and pinged at once so that a wrong scheme, an unreachable server or a wrong password is one clear
line naming where the URL came from, never a traceback and never the password.

    r = connect(args.cluster)        # None -> SURGE_BROKER_URL
    log.info("cluster %s", redact(url))
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

if TYPE_CHECKING:
    import redis

__all__ = ["ENV_URL", "SCHEMES", "ClusterError", "connect", "redact", "resolve_url"]

ENV_URL: Final = "SURGE_BROKER_URL"
SCHEMES: Final = ("redis", "rediss", "unix")
PING_TIMEOUT_S: Final = 3.0
"""Connecting and the first PING: a broker that does not answer in this time is unreachable."""
COMMAND_TIMEOUT_S: Final = 60.0
"""Every later command: a Redis that stops answering fails the caller instead of hanging it."""
_HIDDEN: Final = "***"


class ClusterError(Exception):
    """Redis cannot be used: no URL, a bad URL, unreachable, or refused the credentials.  The
    message is one line, names where the URL came from and never contains the password."""


def redact(url: str) -> str:
    """``url`` with its password (userinfo or ``?password=``) replaced by ``***``, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + _HIDDEN
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, _HIDDEN if k == "password" else v) for k, v in pairs], safe="*")
    # Not urlunsplit: it drops the empty authority of unix:///path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def resolve_url(url: str | None) -> tuple[str, str]:
    """``(url, source)``: ``url`` from ``--cluster``, else ``$SURGE_BROKER_URL``; ClusterError if
    neither is given or the scheme is not one of :data:`SCHEMES`."""
    source = "--cluster"
    if not url:
        url, source = os.environ.get(ENV_URL, ""), ENV_URL
    if not url:
        raise ClusterError(f"no Redis URL: pass --cluster URL or set {ENV_URL}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ClusterError(
            f"{source}: the URL must start with redis://, rediss:// or unix://, got {redact(url)!r}"
        )
    return url, source


def _where(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return str(kw["path"]) if "path" in kw else f"{kw.get('host')}:{kw.get('port')}"


def _has_password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or any(k == "password" for k, _ in parse_qsl(parts.query))


def _os_error(exc: BaseException) -> str:
    """The OS reason under a redis-py ConnectionError (``[Errno 111] Connection refused``)."""
    cause = exc.__cause__ or exc.__context__
    return str(cause) if isinstance(cause, OSError) else str(exc)


def connect(
    url: str | None, *, timeout: float = PING_TIMEOUT_S, decode_responses: bool = False
) -> redis.Redis:
    """A pinged client for ``url`` (or ``$SURGE_BROKER_URL`` when None); ClusterError otherwise."""
    import redis  # here, not at import: a local sync never pays for the client

    url, source = resolve_url(url)
    shown = redact(url)
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=COMMAND_TIMEOUT_S,
            decode_responses=decode_responses,
        )
    except ValueError as exc:  # redis-py's own URL checks: bad port, bad db number, ...
        raise ClusterError(f"{source}: bad Redis URL {shown!r}: {exc}") from None
    where = _where(client)
    try:
        client.ping()
    except redis.AuthenticationError:
        client.close()
        if _has_password(url):
            msg = f"Redis at {where} refused the password in {source} (wrong password or user)"
        else:
            msg = f"Redis at {where} requires a password, and the URL in {source} gives none"
        raise ClusterError(msg) from None
    except redis.TimeoutError:
        client.close()
        raise ClusterError(
            f"cannot reach Redis at {where} ({source}): no answer within {timeout:g} s"
        ) from None
    except redis.ConnectionError as exc:
        client.close()
        raise ClusterError(f"cannot reach Redis at {where} ({source}): {_os_error(exc)}") from None
    except redis.RedisError as exc:
        client.close()
        raise ClusterError(f"Redis at {where} ({source}) refused PING: {exc}") from None
    return client

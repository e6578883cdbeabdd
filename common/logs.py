"""Logging set-up shared by the entry points: `-L dir[:size]` writes a size-capped log file
there, `-D`/`-DD`/`-DDD` raise the level. Secrets (session keys, passwords, tokens) are never
passed to a logger."""

from __future__ import annotations

import logging
import os

__all__ = ["configure_logging"]


def configure_logging(program: str, log_dir: str | None, max_bytes: int, debug: int) -> logging.Logger:
    logger = logging.getLogger("surge")
    # Without a log file or -D nothing would read the records: do not build them (a sync of
    # 100k files would make 200k of them).
    logger.setLevel(logging.DEBUG if debug >= 2 else logging.INFO if (log_dir or debug) else logging.WARNING)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    if log_dir:
        from logging.handlers import RotatingFileHandler  # (socket, pickle, ...): only with -L

        os.makedirs(log_dir, exist_ok=True)
        handler: logging.Handler = RotatingFileHandler(
            os.path.join(log_dir, f"{program}.log"), maxBytes=max_bytes, backupCount=1, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    else:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger

"""`surge token create`: a transfer token for one user, direction, paths and lifetime, signed
with the server's token secret (from its configuration)."""

from __future__ import annotations

import argparse
import sys

from common.serverconfig import ConfigError, load_config
from common.tokens import create_token
from common.units import UnitError, parse_duration

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="surge token", description="transfer tokens")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a token")
    create.add_argument("--config", required=True, help="the server configuration holding the token secret")
    create.add_argument("--user", required=True)
    create.add_argument("--direction", required=True, choices=["push", "pull", "bidi", "upload", "download"])
    create.add_argument("--path", action="append", required=True, help="a path the token allows (repeatable)")
    create.add_argument("--ttl", default="1h", help="lifetime, e.g. 3600, 30m, 1d (default 1h)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        ttl = parse_duration(args.ttl, "--ttl")
    except (ConfigError, UnitError) as exc:
        print(f"surge token: error: {exc}", file=sys.stderr)
        return 2
    if config.token_secret is None:
        print(f"surge token: error: {args.config} has no token secret ([server] token_secret)", file=sys.stderr)
        return 2
    print(create_token(config.token_secret, user=args.user, direction=args.direction, paths=args.path, ttl=ttl))
    return 0

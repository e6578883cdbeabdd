"""`surge agent`: the far end of a session, speaking the control protocol on stdin/stdout.

A client starts it as a local child process (local `surge cp`), through SSH as the remote
command (as ascp starts ascp on the server, e.g. from an `authorized_keys` forced command), or
`surge server` starts one per SSH session. After `hello` it serves, in any order, `push`
(upload), `pull` (download) and `op` (file operations) requests until `bye` or end of input;
a `watch` request (continuous sync) streams the changes of a tree until the channel ends.
Diagnostics go to stderr (or `-R` dir); stdout carries only frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import sys
from typing import BinaryIO

from common import __version__
from common.control.framing import ProtocolError
from common.control.messages import PROTOCOL_VERSION, available_cores
from common.logs import configure_logging
from common.metrics_relay import relay_to
from common.paths import PathError
from common.serverconfig import ConfigError, load_config

from .context import AgentContext, Channel
from .ops import handle_op
from .pull import handle_pull
from .push import handle_push
from .watch import handle_watch

__all__ = ["main", "serve"]


def serve(rin: BinaryIO, wout: BinaryIO, ctx: AgentContext) -> int:
    chan = Channel(rin, wout)
    status = 0
    try:
        hello = chan.recv("hello")
        if hello.get("version") != PROTOCOL_VERSION:
            return chan.refuse("version", f"protocol version {hello.get('version')} not supported "
                                          f"(this agent speaks {PROTOCOL_VERSION})")  # fmt: skip
        token = hello.get("token")
        ctx.token = str(token) if token else None
        _remote_logging(ctx, hello)
        # The server's filter rules: a sync client applies them before its own (the reference:
        # aspera.conf filters apply to async sessions first), so it never plans what they hide.
        rules = [[r.kind, r.pattern] for r in ctx.policy.filters]
        chan.send({"type": "hello", "version": PROTOCOL_VERSION, "software": f"surge {__version__}",
                   "user": ctx.user, "filters": rules, "cores": available_cores()})  # fmt: skip
        while True:
            try:
                msg = chan.recv()
            except EOFError:
                return status
            kind = msg["type"]
            if kind == "bye":
                return status
            if kind == "push":
                status = max(status, handle_push(chan, msg, ctx))
            elif kind == "pull":
                status = max(status, handle_pull(chan, msg, ctx))
            elif kind == "op":
                handle_op(chan, msg, ctx)
            elif kind == "watch":  # the channel is the watch's from here on
                return max(status, handle_watch(chan, msg, ctx))
            else:
                return chan.refuse("request", f"unknown request {kind!r}")
    except (ProtocolError, EOFError) as exc:
        print(f"surge agent: {exc}", file=sys.stderr)
        return 2


def _remote_logging(ctx: AgentContext, hello: dict[str, object]) -> None:
    """-R: log this session into a directory of the client's choosing (inside the docroot);
    the session's cookie and tags go into that log."""
    log_dir = hello.get("log_dir")
    if not isinstance(log_dir, str) or not log_dir:
        return
    try:
        path = ctx.resolve(log_dir)
        log = configure_logging("surge-agent", path, 10 << 20, 0)
    except (PathError, OSError) as exc:
        print(f"surge agent: -R {log_dir}: {exc}", file=sys.stderr)
        return
    log.info("session for user %s, cookie %r, tags %s", ctx.user, hello.get("cookie"), hello.get("tags"))


def _ports(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `surge agent` (and `python -m workers.agent`)."""
    parser = argparse.ArgumentParser(prog="surge agent", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="server configuration (TOML): docroot, directions, ciphers, rates")
    parser.add_argument("--user", help="the transfer user (default: the login user)")
    parser.add_argument("--udp-ports", help="UDP port or range for data (default: the client's -O)")
    parser.add_argument("--bind", help="address for the UDP port (default 0.0.0.0; local: 127.0.0.1)")
    parser.add_argument("--docroot", help="confine the user to this directory (overrides the config)")
    parser.add_argument("-R", dest="log_dir", help="log directory")
    parser.add_argument("--metrics-fd", type=int, help=argparse.SUPPRESS)  # from surge server
    args = parser.parse_args(argv)
    if args.metrics_fd is not None:
        try:
            relay_to(args.metrics_fd)
        except OSError as exc:
            print(f"surge agent: --metrics-fd {args.metrics_fd}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    try:
        config = load_config(args.config or os.environ.get("SURGE_CONFIG"))
    except ConfigError as exc:
        print(f"surge agent: {exc}", file=sys.stderr)
        return 2
    user = args.user or os.environ.get("SURGE_USER") or getpass.getuser()
    ports = _ports(args.udp_ports) if args.udp_ports else None
    bind = args.bind or os.environ.get("SURGE_AGENT_BIND") or "0.0.0.0"
    policy = config.user(user)
    if args.docroot:
        policy = dataclasses.replace(policy, docroot=os.path.realpath(args.docroot), restrictions=())
    ctx = AgentContext(user=user, policy=policy, token_secret=config.token_secret,
                       udp_ports=ports, bind_host=bind,
                       port_fallback=os.environ.get("SURGE_AGENT_PORT_FALLBACK") == "1")  # fmt: skip
    return serve(sys.stdin.buffer, sys.stdout.buffer, ctx)


if __name__ == "__main__":
    sys.exit(main())

"""The `surge` command and its subcommands (cp, sync, agent, server, token, worker, coordinator,
status, cancel); each lives in its own module, imported only when it runs.

Only this module reads the command line and decides exit codes: 0 success, 1 a transfer that
did not fully succeed, 2 bad usage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from common import __version__

if TYPE_CHECKING:
    from .cp.options import CopyOptions

__all__ = ["main"]

USAGE = f"""usage: surge [--version] [-h] <command> [options]

Surge {__version__}: fast file transfer over UDP (ascp/async compatible).

commands:
  sync     synchronize two directories (async options; `surge sync -h`)
  cp       copy files and directories (ascp options; `surge cp -h`)
  agent    serve one transfer on stdin/stdout (run by a client or by sshd)
  server   a self-contained far end with its own SSH server
  token    create transfer tokens signed with the server's secret
  worker       a Celery worker of a Surge cluster (`--cluster URL`)
  coordinator  the long-lived service that plans and tracks cluster sync jobs
  status       progress of a pair's cluster jobs (`-N NAME --cluster URL`)
  cancel       stop a pair's continuous cluster job (`-N NAME --cluster URL`)
"""


def _cp(argv: Sequence[str]) -> int:
    from common.filters import FilterError

    from .cp.client import run_copy
    from .cp.common import CopyError
    from .cp.options import InfoRequest, OptionError, parse_cp_args
    from .cp.report import print_problems, summary, write_manifest
    from .cp.sources import SourceError

    try:
        opts = parse_cp_args(argv)
    except InfoRequest as info:
        print(info.text)
        return 0
    except OptionError as exc:
        print(f"surge cp: error: {exc}", file=sys.stderr)
        return 2
    from common.logs import configure_logging

    configure_logging("surge-cp", opts.log_dir, opts.log_size, opts.debug)
    for ignored in opts.ignored_sources:
        print(
            f"surge cp: warning: {ignored}: ignored (sources come from the file list)",
            file=sys.stderr,
        )
    console = _CpConsole(opts)
    try:
        result = run_copy(
            opts, progress=console.on_progress, on_file=console.on_file, on_job=console.on_job
        )
    except (CopyError, SourceError, FilterError) as exc:
        console.close()
        print(f"surge cp: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        console.close()
        print("surge cp: interrupted", file=sys.stderr)
        return 130
    console.close()
    write_manifest(opts, result)
    print_problems(result)
    if not opts.quiet:
        print(summary(result), file=sys.stderr)
    return 0 if result.ok else 1


class _CpConsole:
    """What `surge cp` shows on stderr while it runs: the progress bar (on a terminal, unless
    -q), a line per file (-D) and the job size (--precalculate-job-size)."""

    def __init__(self, opts: CopyOptions) -> None:
        from .cp.report import Progress

        self.opts = opts
        self.progress = Progress(0, False)

    def on_progress(self, stats: dict[str, object]) -> None:
        from .cp.report import Progress

        # The bar starts at the first report: it knows the total.
        if not self.opts.quiet and sys.stderr.isatty() and self.progress._bar is None:
            total = stats.get("bytes_total", 0)
            self.progress = Progress(total if isinstance(total, int) else 0, True)
        self.progress.update(stats)

    def on_file(self, f: object, event: dict[str, object]) -> None:
        from .cp.report import file_line

        if self.opts.debug:
            print(file_line(f, event), file=sys.stderr)  # type: ignore[arg-type]

    def on_job(self, files: int, size: int) -> None:
        from common.units import format_bytes

        if self.opts.precalculate_job_size and not self.opts.quiet:
            print(f"Job size: {format_bytes(size)} in {files} file(s)", file=sys.stderr)

    def close(self) -> None:
        self.progress.close()


def _agent(argv: Sequence[str]) -> int:
    from workers.agent import main as agent_main

    return agent_main(list(argv))


def _sync(argv: Sequence[str]) -> int:
    from .sync.cli import main as sync_main

    return sync_main(argv)


def _server(argv: Sequence[str]) -> int:
    from workers.server import main as server_main

    return server_main(list(argv))


def _token(argv: Sequence[str]) -> int:
    from .token_cli import main as token_main

    return token_main(list(argv))


def _worker(argv: Sequence[str]) -> int:
    from workers.cluster.cli import worker_main

    return worker_main(list(argv))


def _coordinator(argv: Sequence[str]) -> int:
    from .cluster.cli import coordinator_main

    return coordinator_main(list(argv))


def _status(argv: Sequence[str]) -> int:
    from .cluster.cli import status_main

    return status_main(list(argv))


def _cancel(argv: Sequence[str]) -> int:
    from .cluster.cli import cancel_main

    return cancel_main(list(argv))


COMMANDS = {"cp": _cp, "sync": _sync, "agent": _agent, "server": _server, "token": _token,
            "worker": _worker, "coordinator": _coordinator, "status": _status, "cancel": _cancel}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("--version", "-A"):
        print(f"surge {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command in COMMANDS:
        return COMMANDS[command](rest)
    print(f"surge: error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

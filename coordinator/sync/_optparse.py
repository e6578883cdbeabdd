"""The argparse side of :mod:`coordinator.sync.options`: the errors, a parser that raises instead
of exiting and records the order of the options (for async's "-N must precede all session
options"), and the table of async's options. Values stay text here.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from common import __version__
from coordinator.optcommon import InfoRequest, OptionError, ShowHelp, ShowVersion

__all__ = [
    "INSTANCE_DESTS",
    "Append",
    "Count",
    "Flag",
    "Info",
    "InfoRequest",
    "OptionError",
    "Parser",
    "ShowHelp",
    "ShowVersion",
    "Store",
    "build_parser",
    "check_order",
]



# ----------------------------------------------------------------------------------- parser


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`OptionError` instead of printing and exiting."""

    version_text = ""

    def error(self, message: str) -> NoReturn:
        raise OptionError(re.sub(r"^argument (\S+): ", r"\1: ", message))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise OptionError(message.strip() if message else f"exit {status}")

    def join_values(self, argv: Sequence[str]) -> list[str]:
        """getopt's semantics: an option that takes a value takes the next word even if it
        starts with '-' (``--exclude -tmp``); argparse would take that word for an option."""
        takes_value = {name for action in self._actions if action.nargs is None
                       for name in action.option_strings}
        joined: list[str] = []
        words = iter(argv)
        for word in words:
            if word in takes_value:
                value = next(words, None)
                if value is not None and value.startswith("-"):
                    word = f"{word}={value}"
                elif value is not None:
                    joined.append(word)
                    word = value
            joined.append(word)
        return joined


def _record(namespace: argparse.Namespace, dest: str, option_string: str | None) -> None:
    """Remember (dest, option) in command-line order, for the -N ordering rule."""
    order = getattr(namespace, "order", None) or []
    namespace.order = [*order, (dest, option_string or dest)]


class Store(argparse.Action):
    """Store the value (or ``const`` for an optional value given bare)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        _record(namespace, self.dest, option_string)
        setattr(namespace, self.dest, values)


class Flag(argparse.Action):
    """An option without a value: set True."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        _record(namespace, self.dest, option_string)
        setattr(namespace, self.dest, True)


class Count(argparse.Action):
    """``-D``, ``-DD``, ...: count the repetitions."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        _record(namespace, self.dest, option_string)
        setattr(namespace, self.dest, (getattr(namespace, self.dest, 0) or 0) + 1)


class Append(argparse.Action):
    """Append ``(const, value, option)`` to a list shared by several options, keeping order;
    with ``const=None`` append the bare value."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        _record(namespace, self.dest, option_string)
        item = values if self.const is None else (self.const, values, option_string)
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), item])


class Info(argparse.Action):
    """``-h`` and ``-A``: raise the InfoRequest that carries the text to print."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if self.const == "help":
            raise ShowHelp(parser.format_help())
        raise ShowVersion(getattr(parser, "version_text", "") or parser.prog)


# ---------------------------------------------------------------------------- the options

INSTANCE_DESTS = frozenset({"apply_local_docroot", "debug", "log", "quiet", "watchd"})

_ENVIRONMENT = """environment:
  SURGE_PASS, ASPERA_SCP_PASS      password of the transfer user (overridden by -w)
  SURGE_TOKEN, ASPERA_SCP_TOKEN    authorization token (overridden by -W)
  SURGE_COOKIE, ASPERA_SCP_COOKIE  cookie string (overridden by --cookie)
  USER                             the remote user when neither --user nor USER@ is given
  SURGE_BROKER_URL                 the cluster's Redis URL for a bare --cluster"""


def build_parser() -> argparse.ArgumentParser:
    """The ``surge sync`` parser. Values stay text; :func:`parse_sync_args` converts them."""
    parser = Parser(
        prog="surge sync", add_help=False, allow_abbrev=False, epilog=_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [instance options] -N NAME -d LDIR -r [[USER@]HOST:]RDIR [options]",
        description="Synchronise two directories over FASP, with async's options.")
    parser.version_text = f"surge sync {__version__} (async-compatible directory sync)"
    _add_instance_and_session(parser)
    _add_files(parser)
    _add_transfer(parser)
    return parser


def _add_instance_and_session(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("instance options").add_argument
    g("-h", "--help", action=Info, const="help", help="show this help and exit")
    g("-A", "--version", action=Info, const="version", help="show the version and exit")
    g("--apply-local-docroot", action=Flag, help="use the local directory as docroot")
    g("-D", dest="debug", action=Count, help="debug logging; -DD, -DDD for more")
    g("-L", "--alt-logdir", dest="log", action=Store, metavar="DIR[:MB]",
      help="local log directory, rotated at MB megabytes")
    g("-q", "--quiet", action=Flag, help="no output")
    g("--watchd", action=Store, metavar="DATASTORE:HOST:PORT[:DOMAIN]",
      help="use asperawatchd on redis or scalekv (accepted, no effect)")
    g = parser.add_argument_group("session").add_argument
    g("-N", "--name", action=Store, metavar="NAME",
      help="session name (letters, digits, - and _); must precede the session options")
    g("-d", "--local-dir", action=Store, metavar="LDIR", help="the local directory")
    g("-r", "--remote-dir", action=Store, metavar="[[USER@]HOST:]RDIR",
      help="the remote directory; without a host, a second local directory")
    g("--host", action=Store, metavar="HOST", help="remote host; '@' and ':' in -r are plain")
    g("--user", action=Store, metavar="USER", help="transfer user; '@' in -r is plain")
    g("-K", "--direction", action=Store, metavar="DIR", help="push (default), pull or bidi")
    g("-C", "--continuous", action=Flag, help="keep synchronising changes")
    g("--create-dir", action=Flag, help="create missing local and remote directories")
    g("-x", "--reset", action=Flag, help="clear the sync database and rescan")
    g("-b", "--local-db-dir", action=Store, metavar="DIR", help="local database directory")
    g("-B", "--remote-db-dir", action=Store, metavar="DIR", help="remote database directory")
    g("-R", "--remote-logdir", dest="remote_log", action=Store, metavar="DIR[:MB]",
      help="remote log directory")
    g("--no-log", action=Store, metavar="stats", help="suppress STATS and PROG messages")
    g("--ignore_remote_host_sync_name", "--ignore-remote-host-sync-name",
      dest="ignore_remote_host_sync_name", action=Flag,
      help="do not check that the remote host is the database's")
    g("--cookie", action=Store, metavar="COOKIE", help="cookie reported with transfers")
    g("--tags", dest="tags", action=Append, const="json", metavar="JSON",
      help="metadata tags, a JSON object of at most 4 KB")
    g("--tags64", dest="tags", action=Append, const="base64", metavar="BASE64",
      help="metadata tags as base64-encoded JSON")
    g("--file-manifest-path", action=Store, metavar="DIR", help="write text manifests here")


def _add_files(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("what to synchronise").add_argument
    g("--include", dest="filters", action=Append, const=("include", False),
      metavar="PATTERN", help="include paths matching PATTERN (first match wins)")
    g("--exclude", dest="filters", action=Append, const=("exclude", False),
      metavar="PATTERN", help="exclude paths matching PATTERN")
    g("-I", "--include-from", dest="filters", action=Append, const=("include", True),
      metavar="FILE", help="read rules from FILE (plain lines include)")
    g("-E", "--exclude-from", dest="filters", action=Append, const=("exclude", True),
      metavar="FILE", help="read rules from FILE (plain lines exclude)")
    g("--exclude-dirs-older-than", action=Store, metavar="MTIME",
      help="skip directories older than epoch seconds, YYYY-MM-DDTHH:MM:SS or a duration")
    g("-k", "--checksum", action=Store, metavar="TYPE",
      help="sha1, md5, sha1-sparse (default), md5-sparse or none")
    g("-o", "--overwrite", action=Store, metavar="POLICY",
      help="always, older or conflict (default: always; conflict for bidi)")
    g("--mirror", action=Flag, help="make the target an exact copy of the source")
    g("--ignore-delete", action=Flag, help="do not copy deletions")
    g("--delete-before", action=Flag, help="delete ahead of transfers")
    g("--delete-delay", action=Flag, help="delete at the end of the sync")
    g("--keep-dir-local", action=Store, metavar="DIR", help="move local deletions into DIR")
    g("--keep-dir-remote", action=Store, metavar="DIR", help="move remote deletions into DIR")
    g("--remove-after-transfer", action=Flag, help="remove source files once synchronised")
    g("--assume-no-mods", action=Flag, help="skip directories whose mtime is unchanged")
    g("--scan-file-rename", action=Flag, help="detect renamed files by inode")
    g("--scan-dir-rename", action=Flag, help="detect renamed directories by inode")
    g("--dedup", action=Store, nargs="?", const="hardlink", metavar="MODE",
      help="hardlink (default), inode or copy duplicates; needs -k sha1 or md5")
    g("-t", "--preserve-time", "--preserve-modification-time", dest="preserve_mtime",
      action=Flag, help="preserve modification times")
    g("--preserve-access-time", dest="preserve_atime", action=Flag, help="preserve atimes")
    g("--preserve-creation-time", dest="preserve_ctime", action=Flag,
      help="preserve creation times (Windows only; no effect here)")
    g("-u", "--preserve-uid", action=Flag, help="preserve owners (root only)")
    g("-j", "--preserve-gid", action=Flag, help="preserve groups (root only)")
    g("--write-uid", action=Store, metavar="UID", help="write files as this user")
    g("--write-gid", action=Store, metavar="GID", help="write files as this group")
    for side in ("", "remote-"):
        for what in ("xattrs", "acls"):
            # "--remote-preserve-acles": the spelling of the reference's first example (001).
            typo = ("--remote-preserve-acles",) if side and what == "acls" else ()
            g(f"--{side}preserve-{what}", *typo, action=Store, metavar="MODE",
              help=f"{side}{what}: native, metafile or none")
    g("--preserve-object-lock-legal-hold", action=Flag, help="S3 only; no effect here")
    g("--preserve-object-lock-retention", action=Flag, help="S3 only; no effect here")
    g("--ignore-mode", action=Flag, help="do not synchronise permissions")
    g("--no-preserve-root-attrs", action=Flag, help="leave the root's attributes alone")
    g("--store-metadata-records", action=Flag, help="keep ACLs/xattrs in the database")
    g("--clean-excluded", action=Flag, help="drop excluded directories from the database")
    g("-n", "--symbolic-links", action=Store, metavar="ACTION",
      help="copy (default), skip or follow")
    g("--local-mount-signature", action=Store, metavar="FILE",
      help="the local file system is mounted when FILE exists")
    g("--remote-mount-signature", action=Store, metavar="FILE",
      help="the remote file system is mounted when FILE exists")


def _add_transfer(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("scanning and transfer").add_argument
    for name, default in (("local-fs-threads", "1"), ("remote-fs-threads", "1"),
                          ("local-checksum-threads", "4"), ("remote-checksum-threads", "4"),
                          ("scan-threads", "1"), ("remote-scan-threads", "1"),
                          ("cooloff", "3 s, 0-60"), ("cooloff-max", "0 s: no limit"),
                          ("sharing-retry-max", "3"), ("pending-max", "2000 files"),
                          ("resume-age-days", "5")):
        g(f"--{name}", action=Store, metavar="N", help=f"default {default}")
    g("--support-resume", action=Store, nargs="?", const=None,
      metavar="SIZE", help="resume files larger than SIZE (default 1048576)")
    g("--scan-interval", action=Store, metavar="DURATION", help="periodic local scans (-C)")
    g("--remote-scan-interval", action=Store, metavar="DURATION", help="periodic remote scans")
    g("--no-scan", action=Flag, help="rely on notifications only (-C)")
    g("--local-force-stat", action=Flag, help="always stat local files")
    g("--remote-force-stat", action=Flag, help="always stat remote files")
    g("-H", "--scan-intensity", action=Store, metavar="LEVEL",
      help="vlow, low, medium (default), high or vhigh")
    g("--metrics-port", action=Store, metavar="N", help="-C: serve Prometheus metrics on 127.0.0.1:N")
    g("--transfer-threads", dest="transfer_threads", action=Append, metavar="N[:SIZE]",
      help="N threads for files up to SIZE bytes (repeatable)")
    g("-l", "--target-rate", action=Store, metavar="RATE",
      help="target rate with G/M/K or bps units (default 10M)")
    g("-m", "--min-rate", action=Store, metavar="RATE", help="minimum rate (default 200K)")
    g("-a", "--rate-policy", dest="policy", action=Store, metavar="POLICY",
      help="fixed, fair (default), high or low")
    g("-c", "--cipher", action=Store, metavar="CIPHER",
      help="aes128 (default), aes192, aes256, with cfb/gcm suffix, or none")
    g("--compression", action=Store, metavar="METHOD", help="zlib or none (default)")
    g("-O", "--udp-port", action=Store, metavar="PORT", help="UDP port (default 33001)")
    g("-P", "--tcp-port", dest="ssh_port", action=Store, metavar="PORT",
      help="SSH port (default 22)")
    g("-i", "--private-key-path", dest="keys", action=Append, metavar="FILE",
      help="SSH private key (repeatable)")
    g("-w", "--pass", dest="password", action=Store, metavar="PASS", help="password")
    g("-W", "--token", action=Store, metavar="TOKEN", help="authorization token")
    g("--check-sshfp", action=Store, metavar="FINGERPRINT", help="expected host key hash")
    g("--proxy", action=Store, metavar="URL", help="dnat[s]://USER:PASS@HOST[:PORT]")
    g("-Z", "--datagram-size", action=Store, metavar="BYTES", help="default: path MTU")
    g("-X", "--rexmsg-size", action=Store, metavar="BYTES", help="at most 1440")
    g("-g", "--read-block-size", action=Store, metavar="SIZE", help="default 64M")
    g("-G", "--write-block-size", action=Store, metavar="SIZE", help="default 64K, max 16M")
    g("--raw-options", dest="raw_options", action=Append, metavar="ARG",
      help="pass ARG to the transfer engine (repeatable, in order)")
    _add_cluster(parser)


def _add_cluster(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cluster (docs/CLUSTER.md)").add_argument
    g("--cluster", action=Store, nargs="?", const="", metavar="URL",
      help="run on a Surge cluster: Redis URL (bare: $SURGE_BROKER_URL); -K push only")
    g("--detach", action=Flag, help="with --cluster: submit to `surge coordinator`, print the job id")
    g("--multi-session-threshold", action=Store, metavar="SIZE",
      help="with --cluster: split files of at least SIZE into byte ranges (default 0: never)")




def check_order(namespace: argparse.Namespace) -> None:
    """async's rule: -N is required and precedes every session option (instance options may
    come before it)."""
    order: list[tuple[str, str]] = getattr(namespace, "order", None) or []
    dests = [dest for dest, _ in order]
    if "name" not in dests:
        raise OptionError("-N: required: the session name (before the session options)")
    for dest, option in order[:dests.index("name")]:
        if dest not in INSTANCE_DESTS:
            raise OptionError(f"-N: must precede all session options; {option} came before it")

"""The argparse parser of ``surge cp`` (:func:`build_parser`): ascp's options, values kept as
text for :mod:`coordinator.cp.options` to convert. It raises :class:`OptionError` instead of
printing and exiting, and :class:`InfoRequest` for ``-h``/``-A``."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeAlias

from common import __version__
from coordinator.optcommon import OptionError, ShowHelp, ShowVersion

__all__ = ["Append", "Info", "Parser", "build_parser"]

_FLAG = "store_true"
_Add: TypeAlias = Callable[..., argparse.Action]  # an argument group's add_argument


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`OptionError` instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise OptionError(re.sub(r"^argument (\S+): ", r"\1: ", message))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise OptionError(message.strip() if message else f"exit {status}")

    def split_argv(self, argv: Sequence[str]) -> tuple[list[str], list[str]]:
        """Split at ``--`` into (options and paths, paths only), with getopt's semantics: an
        option that takes a value takes the next word even if it starts with '-'."""
        takes_value = {
            name
            for action in self._actions
            if action.nargs is None
            for name in action.option_strings
        }
        joined: list[str] = []
        words = iter(argv)
        for word in words:
            if word == "--":
                return joined, list(words)
            if word in takes_value:
                value = next(words, None)
                if value == "--":  # the separator, not a value: argparse reports the gap
                    return [*joined, word], list(words)
                if value is not None and value.startswith("-"):
                    word = f"{word}={value}"
                elif value is not None:
                    joined.append(word)
                    word = value
            joined.append(word)
        return joined, []


class Append(argparse.Action):
    """Append ``(self.const, value)`` to a list shared by several options, keeping order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        previous = getattr(namespace, self.dest, None) or []
        setattr(namespace, self.dest, [*previous, (self.const, values)])


class Info(argparse.Action):
    """``-h`` and ``-A``: raise the InfoRequest that carries the text to print."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if self.const == "help":
            raise ShowHelp(parser.format_help())
        raise ShowVersion(f"surge cp {__version__} (ascp-compatible FASP client)")


ENVIRONMENT = """environment:
  SURGE_PASS, ASPERA_SCP_PASS      password of the transfer user
  SURGE_TOKEN, ASPERA_SCP_TOKEN    authorization token (overridden by -W)
  SURGE_COOKIE, ASPERA_SCP_COOKIE  cookie string (overridden by --cookie)
  SURGE_KEY, ASPERA_SCP_KEY        private key (its text, or a key file) when no -i is given
  ASPERA_PROXY_PASS                --proxy password when the URL has none"""


def build_parser() -> argparse.ArgumentParser:
    """The ``surge cp`` parser. Values stay text; :func:`parse_cp_args` converts them."""
    parser = Parser(
        prog="surge cp",
        add_help=False,
        allow_abbrev=False,
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [[user@]host:]SOURCE... [[user@]host:]DESTINATION",
        description="Copy files over FASP, with ascp's options. Sources may be faux:// URLs.",
    )
    add = parser.add_argument
    add("paths", nargs="*", metavar="PATH", help="sources, then the destination")
    add("-h", "--help", action=Info, nargs=0, const="help", help="show this help and exit")
    add("-A", "--version", action=Info, nargs=0, const="version", help="show the version and exit")
    _add_files(parser)
    _add_transfer(parser)
    _add_connection(parser)
    _add_output(parser)
    _add_inapplicable(parser)
    return parser


# The option tables: one option a line or two, like ascp's manual (not reflowed by ruff format).
# fmt: off


def _add_files(parser: argparse.ArgumentParser) -> None:
    # One group for all: the help shows a single "files" section, in this order.
    g = parser.add_argument_group("files").add_argument
    _add_selection(g)
    _add_writing(g)
    _add_after_transfer(g)
    _add_paths_and_owners(g)


def _add_selection(g: _Add) -> None:
    """Which files: lists, base, filters, times, a byte range."""
    g("--file-list", action=Append, dest="source_list", const="file_list", metavar="FILE",
      help="transfer the sources listed in FILE, one a line ('-': stdin)")
    g("--file-pair-list", action=Append, dest="source_list", const="file_pair_list",
      metavar="FILE", help="transfer sources to destinations listed in FILE on alternate lines")
    g("--src-base", metavar="PREFIX", help="strip PREFIX from source paths at the destination")
    g("-d", dest="create_dir", action=_FLAG, help="create the destination directory if missing")
    g("-E", "--exclude", action=Append, dest="filters", const="exclude", metavar="PATTERN",
      help="exclude paths matching PATTERN (rules apply left to right)")
    g("-N", "--include", action=Append, dest="filters", const="include", metavar="PATTERN",
      help="include paths matching PATTERN, protecting them from later -E rules")
    g("--exclude-newer-than", metavar="MTIME",
      help="skip files modified after MTIME (epoch seconds; negative: seconds before now)")
    g("--exclude-older-than", metavar="MTIME",
      help="skip files modified before MTIME (epoch seconds; negative: seconds before now)")
    g("--skip-special-files", action=_FLAG, help="skip devices, pipes and sockets silently")
    g("-@", dest="byte_range", metavar="START:END",
      help="send only bytes START..END of a single file (either side may be empty)")


def _add_writing(g: _Add) -> None:
    """How files are written: resume, overwrite, partial files, preserved times."""
    g("-k", dest="resume", metavar="{0,1,2,3}",
      help="resume: 0 re-send all (default), 1 attributes, 2 sparse checksum, 3 full checksum")
    g("--overwrite", metavar="POLICY",
      help="never, always, diff (default), diff+older or older")
    g("--save-before-overwrite", action=_FLAG, help="keep a copy of a file before overwriting it")
    g("--partial-file-suffix", metavar="SUFFIX", default="",
      help="write files in transit as NAME+SUFFIX (default: no partial files)")
    g("--precalculate-job-size", action=_FLAG, help="compute the total size before transferring")
    g("-p", dest="preserve_times", action=_FLAG, help="preserve modification and access times")
    g("--preserve-modification-time", dest="preserve_mtime", action=_FLAG,
      help="preserve modification times")
    g("--preserve-access-time", dest="preserve_atime", action=_FLAG, help="preserve access times")
    g("--preserve-source-access-time", dest="preserve_source_atime", action=_FLAG,
      help="restore source access times after reading")


def _add_after_transfer(g: _Add) -> None:
    """What follows a transfer: source removal, checksums and manifests."""
    g("--remove-after-transfer", action=_FLAG, help="remove source files once transferred")
    g("--move-after-transfer", metavar="ARCHIVEDIR",
      help="move source files to ARCHIVEDIR once transferred")
    g("--remove-empty-directories", action=_FLAG,
      help="remove source directories left empty (not the source arguments)")
    g("--remove-empty-source-directory", action=_FLAG,
      help="with --remove-empty-directories, also remove the source arguments")
    g("--file-checksum", metavar="HASH",
      help="report checksums: md5, sha1, sha-256, sha-384, sha-512 or none (default)")
    g("--file-manifest", metavar="TYPE", help="none (default) or text: list transferred files")
    g("--file-manifest-path", metavar="PATH", help="where to write the text manifest")
    g("--file-manifest-inprogress-suffix", metavar="SUFFIX", default=".aspera-inprogress",
      help="suffix of the manifest while written (default .aspera-inprogress)")


def _add_paths_and_owners(g: _Add) -> None:
    """Path rewriting, symbolic links, owners, and deleting extra destination files."""
    g("--source-prefix", action=Append, dest="source_prefix", const="text", metavar="PREFIX",
      help="prepend PREFIX to each source path")
    g("--source-prefix64", action=Append, dest="source_prefix", const="base64", metavar="BASE64",
      help="the same, base64-encoded (the last of the two wins)")
    g("--dest64", action=_FLAG, help="the destination path is base64-encoded")
    g("--symbolic-links", metavar="METHOD",
      help="follow (default), copy, copy+force or skip symbolic links")
    g("--preserve-file-owner-uid", dest="preserve_uid", action=_FLAG,
      help="give files their source owner (uid); needs root at the destination")
    g("--preserve-file-owner-gid", dest="preserve_gid", action=_FLAG,
      help="give files their source group (gid); needs root at the destination")
    g("--preserve-creation-time", dest="preserve_ctime", action=_FLAG,
      help="Windows only: ignored, as the reference says for other systems")
    g("--delete-before-transfer", action=_FLAG,
      help="first delete destination files the source directory does not have")


def _add_transfer(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("transfer").add_argument
    g("-l", dest="target_rate", metavar="RATE",
      help="target rate; bare number Kbps, G/M/K suffixes, P or %% of link (default 10000)")
    g("-m", dest="min_rate", metavar="RATE", help="minimum rate, same units as -l (default 0)")
    g("-a", "--policy", dest="policy", metavar="POLICY",
      help="fixed, high, fair or low (default: the server's)")
    g("-c", dest="cipher", metavar="CIPHER",
      help="aes128 (default), aes192, aes256, with cfb/gcm suffix, or none")
    g("-T", dest="no_encryption", action=_FLAG, help="disable in-transit encryption (-c none)")
    g("-Z", dest="datagram_size", metavar="BYTES",
      help="datagram size, 296-65535 (default: path MTU)")
    g("-X", dest="rexmsg_size", metavar="BYTES",
      help="largest retransmission request, at most 1440 (default)")
    g("-O", dest="udp_port", metavar="PORT", help="UDP port for FASP (default 33001)")
    g("-C", dest="multi_session", metavar="NODEID:NODECOUNT",
      help="this session is NODEID of NODECOUNT (1-128) parallel sessions")
    g("--multi-session-threshold", metavar="BYTES",
      help="split files of at least BYTES across -C sessions (default 0: never)")
    g("-g", dest="read_block_size", metavar="SIZE", help="read block size, up to 500M; checked, no effect")
    g("-G", dest="write_block_size", metavar="SIZE", help="write block size, up to 500M; checked, no effect")
    g("-K", dest="probe_rate", metavar="RATE",
      help="bandwidth probing rate in Kbps (default 100); accepted, no effect")


def _add_connection(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection").add_argument
    g("--host", metavar="HOST", help="remote host (requires --mode)")
    g("--mode", metavar="MODE", help="send or recv (requires --host)")
    g("--user", metavar="USER", help="transfer user name")
    g("-P", dest="ssh_port", metavar="PORT", help="TCP port of the SSH session (default 22)")
    g("-i", dest="keys", action="append", metavar="KEYFILE",
      help="SSH private key; repeat to try several in order")
    g("-W", dest="token", metavar="TOKEN", help="authorization token, or @FILE to read it")
    g("-6", dest="ipv6", action=_FLAG, help="enable IPv6 addresses")
    g("--check-sshfp", metavar="FINGERPRINT", help="expected server host key hash (hex)")
    g("--cookie", metavar="COOKIE", help="cookie string reported with the transfer")
    g("--tags", action=Append, dest="tags", const="json", metavar="JSON",
      help="metadata tags as a JSON object (at most 4 KB)")
    g("--tags64", action=Append, dest="tags", const="base64", metavar="BASE64",
      help="metadata tags as base64-encoded JSON")


def _add_output(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output").add_argument
    g("-q", dest="quiet", action=_FLAG, help="no progress display")
    g("-L", dest="log", metavar="DIR[:SIZE]", help="local log directory and file size (10M)")
    g("-R", dest="remote_log_dir", metavar="DIR", help="log directory on the server")
    g("-S", dest="remote_command", metavar="COMMAND", default="surge agent",
      help="the remote program to run over SSH (default: surge agent)")
    g("-D", dest="debug", action="count", default=0, help="debug logging; -DD, -DDD for more")
    g("-v", dest="verbose", action=_FLAG, help="verbose: log connection details (as -D)")


def _add_inapplicable(parser: argparse.ArgumentParser) -> None:
    """ascp options for features Surge does not have: accepted without effect, or refused with
    a one-line reason, by :func:`coordinator.cp._inapplicable.check` (docs/PROTOCOL.md)."""
    g = parser.add_argument_group("accepted for compatibility (docs/PROTOCOL.md)").add_argument
    g("--apply-local-docroot", action=_FLAG, help="no local docroot on a Surge client: no effect")
    g("-u", dest="user_string", metavar="STRING", help="pre/post-processing string: no effect")
    g("--preserve-acls", metavar="MODE", help="none only (surge sync preserves ACLs)")
    g("--remote-preserve-acls", metavar="MODE", help="none only")
    g("--preserve-xattrs", metavar="MODE", help="none only (surge sync preserves xattrs)")
    g("--remote-preserve-xattrs", metavar="MODE", help="none only")
    g("-e", dest="prepost", metavar="SCRIPT", help="pre/post-processing script: refused")
    g("-f", dest="config_file", metavar="CONFIG", help="client aspera.conf: refused")
    g("--file-crypt", metavar="encrypt|decrypt", help="client-side encryption at rest: refused")
    g("--proxy", metavar="URL", help="Aspera Proxy dnat[s]://USER:PASS@HOST[:PORT]: checked, no effect")
    g("-wr", dest="measure_reverse", action=_FLAG, help="bandwidth measurement: refused")
    g("-wf", dest="measure_forward", action=_FLAG, help="bandwidth measurement: refused")
    g = parser.add_argument_group("HTTP fallback (never used: Surge is UDP only)").add_argument
    g("-y", dest="http_fallback", metavar="{0,1}", help="0 (default) only; 1 is refused")
    g("-j", dest="http_jpeg", metavar="{0,1}", help="encode HTTP transfers as JPEG: no effect")
    g("-t", dest="http_port", metavar="PORT", help="HTTP fallback port: no effect")
    g("-x", dest="http_proxy", metavar="PROXY", help="HTTP fallback proxy: no effect")
    g("-I", dest="http_cert", metavar="CERTFILE", help="HTTPS fallback certificate: no effect")
    g("-Y", dest="http_key", metavar="KEYFILE", help="HTTPS fallback key: no effect")


# fmt: on

"""ascp options for features a Surge client does not have (HTTP fallback, Aspera Proxy, pre/post
scripts, client-side encryption at rest, bandwidth measurement, ACL/xattr metafiles, a client
aspera.conf, a local docroot). Each is either accepted without effect, because leaving it out changes nothing
here, or refused with a one-line reason naming the option; the values of accepted ones are still
checked. docs/PROTOCOL.md ("Deliberate differences") lists them."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from common.units import parse_rate
from coordinator.optcommon import OptionError, parse_proxy

__all__ = ["PRESERVE_MODES", "check"]

PRESERVE_MODES = ("native", "metafile", "none")

_REFUSED = {
    "prepost": ("-e", "pre/post-processing scripts are not supported"),
    "config_file": ("-f", "a Surge client reads no aspera.conf; give the settings as options"),
    "measure_reverse": (
        "-wr",
        "bandwidth measurement is not supported; the rate follows -l and -a",
    ),
    "measure_forward": (
        "-wf",
        "bandwidth measurement is not supported; the rate follows -l and -a",
    ),
}


def _zero_or_one(text: str | None, option: str) -> int:
    if text is None:
        return 0
    if text.strip() not in ("0", "1"):
        raise OptionError(f"{option}: invalid value {text!r}: expected 0 or 1")
    return int(text)


def _preserve_modes(ns: argparse.Namespace) -> None:
    for dest, option in (("preserve_acls", "--preserve-acls"), ("remote_preserve_acls", "--remote-preserve-acls"),
                         ("preserve_xattrs", "--preserve-xattrs"),
                         ("remote_preserve_xattrs", "--remote-preserve-xattrs")):  # fmt: skip
        value = getattr(ns, dest)
        if value is None:
            continue
        mode = value.strip().lower()
        if mode not in PRESERVE_MODES:
            raise OptionError(
                f"{option}: unknown mode {value!r}: expected one of " + ", ".join(PRESERVE_MODES)
            )
        if mode != "none":
            what = "ACLs" if "acls" in dest else "extended attributes"
            raise OptionError(
                f"{option}={mode}: surge cp does not preserve {what} (surge sync {option} does)"
            )


def check(ns: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Refuse the options Surge cannot honour; check the values of those it ignores (`env`:
    ASPERA_PROXY_PASS may hold the --proxy password)."""
    for dest, (option, why) in _REFUSED.items():
        if getattr(ns, dest) not in (None, False):
            raise OptionError(f"{option}: {why}")
    if ns.file_crypt is not None:
        if ns.file_crypt.strip().lower() not in ("encrypt", "decrypt"):
            raise OptionError(
                f"--file-crypt: invalid value {ns.file_crypt!r}: expected encrypt or decrypt"
            )
        raise OptionError("--file-crypt: client-side encryption at rest is not supported")
    if _zero_or_one(ns.http_fallback, "-y"):
        raise OptionError("-y 1: HTTP fallback is not supported: Surge transfers over UDP only")
    _zero_or_one(ns.http_jpeg, "-j")
    if ns.http_port is not None:
        text = ns.http_port.strip()
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise OptionError(f"-t: invalid port {ns.http_port!r}: expected 1..65535")
    for option, value in (("-x", ns.http_proxy), ("-I", ns.http_cert), ("-Y", ns.http_key)):
        if value is not None and not value.strip():
            raise OptionError(f"{option}: empty value")
    if ns.proxy is not None:
        parse_proxy(ns.proxy, "ASPERA_PROXY_PASS", bool(env.get("ASPERA_PROXY_PASS")))  # accepted, as surge sync does: the connection goes direct
    if ns.probe_rate is not None:
        parse_rate(ns.probe_rate, "-K")
    _preserve_modes(ns)

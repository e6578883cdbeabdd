"""Errors of the WAN test bed: each says whose fault it is and what happens next."""

from __future__ import annotations

__all__ = ["WanError", "WanSetupError", "WanUnavailable"]


class WanError(RuntimeError):
    """Base class of every error raised by ``bench.wan``."""


class WanUnavailable(WanError):
    """This machine cannot host the link (not root, no netns, no TUN, no netem). Not retryable:
    run as root on Linux with ``iproute2`` and ``/dev/net/tun``, or pick another backend."""


class WanSetupError(WanError):
    """A command that builds or tears down the link failed; the message names it and its stderr.
    The partial link has been cleaned up; retrying is safe (stale leftovers are recreated)."""

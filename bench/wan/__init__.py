"""A WAN test bed: two network namespaces joined by an emulated link.

    from bench.wan import WanLink, LinkSpec

    with WanLink(LinkSpec(rate_bps=100e6, rtt_ms=50, loss=0.01)) as link:
        server = link.popen("b", ["surge", "serve", "--bind", link.addr_b])
        link.run("a", ["surge", "send", ...], check=True)
        print(link.statistics())

See docs/WAN.md for how the emulator works, its measured accuracy and its limits.
"""

from bench.wan.backends import netem_available
from bench.wan.errors import WanError, WanSetupError, WanUnavailable
from bench.wan.link import Side, WanLink
from bench.wan.model import DirectionModel, DirectionStatistics
from bench.wan.spec import LinkSpec, parse_rate

__all__ = [
    "DirectionModel",
    "DirectionStatistics",
    "LinkSpec",
    "Side",
    "WanError",
    "WanLink",
    "WanSetupError",
    "WanUnavailable",
    "netem_available",
    "parse_rate",
]

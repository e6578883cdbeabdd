"""Continuous sync (-C): watch both trees, synchronize what changed (docs/CONTINUOUS.md)."""

from .cli import run_continuous

__all__ = ["run_continuous"]

"""Benchmarks and the test beds they run on (see ``bench.wan`` for the emulated WAN link)."""

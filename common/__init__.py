"""Building blocks shared by every Surge process: transport, control protocol, units, filters."""

__version__ = "0.1.0"

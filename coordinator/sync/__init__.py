"""`surge sync`: the async-compatible directory synchronisation."""

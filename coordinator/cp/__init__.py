"""`surge cp`: the ascp-compatible one-off copy."""

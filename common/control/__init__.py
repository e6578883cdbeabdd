"""The control protocol spoken between a Surge client and its far end (pipe or SSH channel)."""

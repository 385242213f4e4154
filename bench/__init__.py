"""Benchmarks that print figures beside the raw floor measured in the same run; no assertions."""

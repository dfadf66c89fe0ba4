"""Benchmarks: scripts run one by one by `make bench` (see README.md here)."""

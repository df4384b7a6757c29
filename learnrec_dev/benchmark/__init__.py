"""Benchmarks: scripts run on purpose that print figures and write them as JSON."""

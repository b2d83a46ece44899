"""Benchmarks: make bench (cold starts, relay, event store) and make cost (benchmarks/cost.py)."""

"""Pintu's benchmarks: ``make bench`` (``python -m bench.run``) writes docs/benchmarks.md."""

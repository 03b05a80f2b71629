"""Pintu's benchmarks: ``make bench`` (``python -m bench.run``) runs every suite (``exchange``,
``pki``), each rewriting its own section of docs/benchmarks.md."""

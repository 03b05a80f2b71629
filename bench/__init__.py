"""Pintu's benchmarks: ``make bench`` (``python -m bench.run``) runs every suite (``exchange``,
``pki``, ``registry``), each rewriting its own section of docs/benchmarks.md."""
